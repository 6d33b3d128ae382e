"""``cervixbatch backfill``: a backlog through the same pipeline, outbox and database,
on a Ray cluster (``--engine ray``) or with today's runner (``--engine local``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cervixbatch.cli.common import EXIT_FAILED, app_of, setup_logging

__all__ = ["backfill"]


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--engine",
    type=click.Choice(["ray", "local"]),
    default="ray",
    show_default=True,
    help="ray: Ray Data on a cluster (or a local Ray); local: today's runner, here.",
)
@click.option(
    "--address",
    help="The Ray cluster (head:port, ray://head:10001, auto); default: $RAY_ADDRESS, "
    "else a Ray started for this run.",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    help="Model actors at most (default: one per GPU; without GPUs a quarter of the CPUs).",
)
@click.option(
    "--cpu-tasks",
    type=click.IntRange(min=1),
    help="Read and write tasks in flight at most, each (default: the cluster's CPUs).",
)
@click.option(
    "--actor-cpus",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="CPUs each model actor reserves on a node without GPUs.",
)
@click.option(
    "--task-cpus",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="CPUs each read or write task reserves.",
)
@click.option(
    "--wave",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Inputs claimed at once by the driver.",
)
@click.option(
    "--commit-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Inputs per database transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON on stdout.")
@click.pass_context
def backfill(
    ctx: click.Context,
    *,
    sources: tuple[Path, ...],
    engine: str,
    address: str | None,
    actors: int | None,
    actor_cpus: float,
    task_cpus: float,
    cpu_tasks: int | None,
    wave: int,
    commit_batch: int,
    as_json: bool,
) -> None:
    """Process a backlog: SOURCES are folders, or manifests (one path per line, or a
    .csv with a `path` column). Inputs already done are skipped by their sha256 before
    any decoding; a run killed midway is finished by running it again. A manifest line
    that is not a file is rejected with a reason. Exit 0 when every input is accounted
    for, 1 if any failed or is left queued."""
    from cervixbatch.backfill.sources import ManifestError, expand_sources
    from cervixbatch.errors import CervixbatchError
    from cervixbatch.intake.rules import own_paths

    config = app_of(ctx).config
    setup_logging(config)
    candidates = expand_sources(sources, excluded=own_paths(config))
    try:
        if engine == "local":
            from cervixbatch.backfill.local import backfill_local

            totals = backfill_local(config, candidates)
        else:
            from cervixbatch.backfill.driver import WaveSettings, backfill_ray
            from cervixbatch.backfill.engine import EngineSettings, local_address

            settings = EngineSettings(
                actors=actors,
                actor_cpus=actor_cpus,
                task_cpus=task_cpus,
                cpu_tasks=cpu_tasks,
                commit_batch=commit_batch,
            )
            totals = backfill_ray(
                config,
                candidates,
                address=address or local_address(),
                settings=settings,
                wave=WaveSettings(inputs=wave),
            )
    except ManifestError as exc:
        raise CervixbatchError(str(exc)) from exc
    for line in totals.lines():
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(totals.as_json(), sort_keys=True))
    sys.exit(EXIT_FAILED if totals.failed or totals.queued else 0)
