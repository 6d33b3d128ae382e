"""The Ray Data plan of a backfill: the only module of cervixbatch that imports Ray.

    from_items(claimed inputs) → read_batch (CPU tasks) → ModelStage (actor pool: one
    GPU per actor where the cluster has GPUs, CPU actors otherwise) → write_batch (CPU
    tasks) → the driver, in commit-sized batches (``iter_batches``)

Memory stays bounded for 12 MP photos: a row carries one input; read and write tasks
take a few inputs each and are capped in number, blocks are capped in size, and Ray
Data's streaming executor holds the read stage back while later stages are behind.
What reaches the driver holds no pixels (:func:`~cervixbatch.backfill.stages.write_batch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cervixbatch.backfill.register import hash_here
from cervixbatch.backfill.stages import (
    PAYLOAD,
    InFlight,
    ModelStage,
    StageContext,
    hash_paths,
    pack,
    read_batch,
    unpack,
    write_batch,
)
from cervixbatch.errors import CervixbatchError

if TYPE_CHECKING:
    from cervixbatch.config import Config
    from cervixbatch.worker.batch_state import WorkItem

__all__ = ["ClusterUnreachable", "EngineSettings", "RayEngine"]

_DEFAULT_PORT = 6379
_CONNECT_TIMEOUT_S = 5.0
_MAX_BLOCK_BYTES = 64 * 1024 * 1024  # a few decoded 12 MP working images
# What a model actor holds (measured: 740 MB with the demo models on OpenVINO): Ray
# places no more actors on a node than its memory takes.
_ACTOR_MEMORY_BYTES = 1024 * 1024 * 1024
# A Ray started here keeps its idle workers: by default it stops a worker idle for a
# second beyond one per CPU, and the read and write tasks then pay a fresh process's
# imports (NumPy, OpenCV, ours: seconds of CPU) again and again — on two cores that cost
# a third of the backfill's throughput. (A cluster of `ray start` sets the same with the
# RAY_idle_worker_killing_time_threshold_ms and RAY_num_workers_soft_limit variables:
# docs/cluster.md.)
_KEEP_IDLE_WORKERS_MS = 300_000
# Ray runs the stages as several tasks per CPU; OpenCV's own threads in each of them
# (one per core by default) only add switching between them.
_WORKER_ENV = {"OPENCV_FOR_THREADS_NUM": "1"}


class ClusterUnreachable(CervixbatchError):
    """The Ray cluster at ``--address`` does not answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the plan uses the cluster."""

    actors: int | None = None  # model actors at most; None: one per GPU, else CPUs / 4
    actor_cpus: float = 1.0  # CPUs each model actor reserves where there is no GPU
    task_cpus: float = 1.0  # CPUs each read or write task reserves
    cpu_tasks: int | None = None  # read (and write) tasks in flight at most; None: CPUs
    inputs_per_task: int = 4  # inputs per read or write task (4 decoded 12 MP ≈ 40 MB)
    commit_batch: int = 64  # inputs per transaction on the driver
    # Fewer new files than this in a registration chunk are hashed by the driver: a
    # dataset's start costs more than reading them here.
    hash_on_cluster_from: int = 500


class RayEngine:
    """A connection to a Ray cluster (or a local one) and the backfill's plan on it."""

    def __init__(self, address: str | None, settings: EngineSettings) -> None:
        import ray

        _check_reachable(address)
        self.settings = settings
        local: dict[str, Any] = {}
        if address is None:  # a Ray of our own: its workers stay for the whole run
            cpus = os.cpu_count() or 1
            local["_system_config"] = {
                "idle_worker_killing_time_threshold_ms": _KEEP_IDLE_WORKERS_MS,
                "num_workers_soft_limit": 2 * (settings.cpu_tasks or cpus) + 4,
            }
        try:
            ray.init(
                address=address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": _WORKER_ENV},
                **local,
            )
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            msg = f"cannot connect to the Ray cluster at {address}: {exc}".splitlines()[0]
            raise ClusterUnreachable(msg) from exc
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its own per-dataset INFO
        context = ray.data.DataContext.get_current()
        context.target_max_block_size = _MAX_BLOCK_BYTES
        context.enable_progress_bars = False  # the backfill prints its own progress
        context.enable_operator_progress_bars = False
        context.execution_options.verbose_progress = False
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))

    def close(self) -> None:
        """Disconnects from the cluster (a local one stops)."""
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()

    @property
    def actors(self) -> int:
        """How many model actors the pool grows to."""
        if self.settings.actors:
            return self.settings.actors
        return self.gpus or max(1, self.cpus // 4)

    def hash(self, paths: Sequence[str]) -> dict[str, str]:
        """The sha256 of each path, hashed on the cluster ("" where it cannot be read)."""
        import ray

        if len(paths) < self.settings.hash_on_cluster_from:
            return hash_here(paths)
        blocks = max(1, min(len(paths) // 8, self.cpus * 4))
        dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
        hashed = dataset.map_batches(hash_paths, batch_size=8, batch_format="numpy")
        return {
            str(row["path"]): str(row["sha256"])
            for row in hashed.iter_rows()  # a few hundred bytes each
        }

    def run(
        self, work: Sequence[WorkItem], context: StageContext, config: Config
    ) -> Iterator[list[InFlight]]:
        """Streams ``work`` through the stages; yields the written inputs in commit-sized
        batches as they arrive (any order). Raises what Ray could not recover from."""
        import ray

        settings = self.settings
        per_task = settings.inputs_per_task
        cpu_tasks = settings.cpu_tasks or max(1, self.cpus)
        blocks = max(1, -(-len(work) // per_task))
        dataset = ray.data.from_items(
            [{PAYLOAD: pack(item)} for item in work], override_num_blocks=blocks
        )
        model_args: dict[str, Any] = (
            {"num_gpus": 1} if self.gpus else {"num_cpus": settings.actor_cpus}
        )
        model_args["memory"] = _ACTOR_MEMORY_BYTES
        # Ray Data restarts a lost actor and retries a lost task without limit (its
        # defaults): a node lost midway costs the work in hand there, not the wave.
        actors = ray.data.ActorPoolStrategy(min_size=1, max_size=self.actors)
        planned = (
            dataset.map_batches(
                read_batch,  # type: ignore[arg-type]  # its context comes in fn_kwargs
                fn_kwargs={"context": context},
                batch_size=per_task,
                batch_format="numpy",
                concurrency=cpu_tasks,  # (compute=TaskPoolStrategy fuses it into the actors)
                num_cpus=settings.task_cpus,
            )
            .map_batches(
                ModelStage,
                fn_constructor_kwargs={"config": config},
                batch_size=config.batch.size,
                batch_format="numpy",
                compute=actors,
                **model_args,
            )
            .map_batches(
                write_batch,  # type: ignore[arg-type]  # its context comes in fn_kwargs
                fn_kwargs={"context": context},
                batch_size=per_task,
                batch_format="numpy",
                concurrency=cpu_tasks,
                num_cpus=settings.task_cpus,
            )
        )
        for batch in planned.iter_batches(
            batch_size=settings.commit_batch, batch_format="numpy", prefetch_batches=1
        ):
            yield [unpack(payload) for payload in batch[PAYLOAD]]


def _check_reachable(address: str | None) -> None:
    """A cluster address that nothing answers at: one line, before Ray waits for it."""
    if not address or address == "auto" or address.startswith(("ray://", "local")):
        return
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    try:
        with socket.create_connection(
            (host or address, int(port or _DEFAULT_PORT)), timeout=_CONNECT_TIMEOUT_S
        ):
            pass
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        msg = f"cannot reach the Ray cluster at {address}: {reason}"
        raise ClusterUnreachable(msg) from exc


def local_address() -> str | None:
    """The cluster ``ray start`` left on this machine (RAY_ADDRESS), else None: a local
    Ray is started for the run."""
    return os.environ.get("RAY_ADDRESS") or None
