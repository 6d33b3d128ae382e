"""Prometheus metrics for operators: one endpoint per worker (``[metrics] listen``).

Counts of inputs by state and reason, and the queue depth, are read from the database at
scrape time, so every worker of a fleet reports the same truth the database holds. What
only this worker knows (batch sizes and timings, latency from discovery to done, the
models it runs, its disk watermark, its last successful batch) is recorded in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cervixbatch.config import SocketAddress
from cervixbatch.store import tallies
from cervixbatch.store.db import Database
from cervixbatch.store.schema import Status
from cervixbatch.worker.batch_state import Phase

__all__ = ["Telemetry"]

log = structlog.get_logger(__name__)

_STEPS = tuple(Phase)  # the batch phases, as batch_seconds{step} labels them


class _DatabaseCollector(Collector):
    """Inputs by status and by reason, read from the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily(
            "cervixbatch_inputs", "Inputs in the database by status", labels=["status"]
        )
        by_reason = GaugeMetricFamily(
            "cervixbatch_inputs_by_reason",
            "Rejected and failed inputs by reason code",
            labels=["status", "reason"],
        )
        depth = GaugeMetricFamily("cervixbatch_queue_depth", "Inputs waiting to be processed")
        try:
            with self.db.read_session() as session:
                # kept counts: a scrape costs the same with ten million finished inputs
                counts = tallies.status_counts(session)
                reasons = tallies.reason_counts(session)
        except Exception as exc:  # noqa: BLE001 - a scrape must not take the worker down
            log.warning("metrics_database_unavailable", error=type(exc).__name__)
            return
        for name, count in counts.items():
            by_status.add_metric([name], count)
        for status, reason, count in reasons:
            by_reason.add_metric([status, reason or ""], count)
        depth.add_metric([], counts[Status.QUEUED.value])
        yield by_status
        yield by_reason
        yield depth


class Telemetry:
    """The metrics of this worker, and the HTTP endpoint that serves them."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_DatabaseCollector(db))
        self.batch_inputs = Histogram(
            "cervixbatch_batch_inputs",
            "Inputs per batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "cervixbatch_batch_step_seconds",
            "Seconds per batch step",
            labelnames=["step"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cervixbatch_input_latency_seconds",
            "From discovery to done, per input",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600),
            registry=self.registry,
        )
        self.finished = Gauge(
            "cervixbatch_worker_inputs_total",
            "Inputs this worker took to a state",
            labelnames=["status"],
            registry=self.registry,
        )
        self.last_batch = Gauge(
            "cervixbatch_last_successful_batch_timestamp_seconds",
            "Unix time of this worker's last batch that completed",
            registry=self.registry,
        )
        self.disk_low = Gauge(
            "cervixbatch_disk_watermark_low",
            "1 while free space is below the watermark and no new inputs are taken",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "cervixbatch_database_up",
            "0 while the database is out of reach and the worker waits for it, else 1",
            registry=self.registry,
        )
        self.database_up.set(1)
        self.models = Info("cervixbatch_models", "Model versions (sha256)", registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def set_models(
        self,
        cervix: str,
        lesion: str,
        precision: str,
        runtime: str = "tensorflow",
        *,
        cervix_model: str = "",
        lesion_model: str = "",
    ) -> None:
        """Records the versions of the loaded models, what runs them, and what each file
        was (format and architecture, e.g. "keras2-h5-weights: seed lesion UNet (...)")."""
        self.models.info(
            {
                "cervix": cervix,
                "lesion": lesion,
                "precision": precision,
                "runtime": runtime,
                "cervix_model": cervix_model,
                "lesion_model": lesion_model,
            }
        )

    def observe_batch(self, outcome: Any) -> None:
        """Records one BatchOutcome of the runner."""
        self.batch_inputs.observe(outcome.inputs)
        for step in _STEPS:
            if step in outcome.timings_ms:
                self.batch_seconds.labels(step=step).observe(outcome.timings_ms[step] / 1000)
        for latency in getattr(outcome, "latencies_s", ()):
            self.latency.observe(latency)
        for status in (s.value for s in Status if s.terminal):
            self.finished.labels(status=status).inc(getattr(outcome, status))
        self.last_batch.set(time.time())

    def serve(self, address: SocketAddress) -> SocketAddress:
        """Starts the HTTP endpoint (``[metrics] listen``); returns where it listens."""
        from prometheus_client import start_http_server

        host, port = address
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self._thread.name = "cervixbatch-metrics"
        log.info("metrics_listening", host=host, port=port)
        return address

    def close(self) -> None:
        """Stops the endpoint and joins its thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
