"""The service: bootstrap → loop → teardown (in a ``finally``), like rq's worker.

One main thread does the work: it takes settled files from the tracker and registers
them, runs a batch when one is due, rescans the inbox, supervises the observer and talks
to systemd. Only the watchdog observer (feeding the tracker) and the runner's read/write
pools run beside it, and teardown joins them all. Signals only set flags
(:mod:`cervixbatchd.signals`): a batch in hand always finishes and commits before the
loop looks at them.

Batching: the runner claims up to ``batch.size`` queued inputs per call. A full batch
goes at once; a partial one waits up to ``batch.max_wait_ms`` from the first
registration that made the queue non-empty, for more files to join it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from cervixbatch.config import Config
from cervixbatch.errors import CervixbatchError
from cervixbatch.intake.discovery import FileIdentity, identify
from cervixbatch.intake.rules import InputRule, own_paths
from cervixbatch.logs import configure_logging
from cervixbatch.model.pair import load_stages
from cervixbatch.ops.retention import RetentionSweeper
from cervixbatch.store.db import Database, open_configured
from cervixbatch.store.outage import is_unavailable, open_when_available
from cervixbatch.store.schema import Status
from cervixbatch.version import __version__
from cervixbatch.worker.batch_state import BatchOutcome
from cervixbatch.worker.presence import WorkerPresence
from cervixbatch.worker.runner import Runner
from cervixbatchd.network_intake import NetworkIntake
from cervixbatchd.notify import Notifier, status_line
from cervixbatchd.outage import ride_out
from cervixbatchd.registering import BackgroundRegistrar
from cervixbatchd.reload import reload_config
from cervixbatchd.settle import SettleTracker
from cervixbatchd.signals import SignalFlags, Wakeup
from cervixbatchd.telemetry import Telemetry
from cervixbatchd.watch import InboxWatcher, ObserverFailedError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EXIT_FAILED", "EXIT_OK", "Service", "serve"]

log = structlog.get_logger("cervixbatchd")

EXIT_OK = 0
EXIT_FAILED = 1  # systemd's Restart=on-failure starts the service again
STATUS_EVERY_S = 5.0  # counts for STATUS= (and a check on the queue other workers fill)
SUPERVISE_EVERY_S = 1.0  # the longest the loop sleeps: observer checks, signal flags


def serve(config: Config, *, config_path: Path | None = None, burst: bool = False) -> int:
    """Run the service until a signal stops it; return the exit status.

    In burst mode it returns once what is in the inbox now is processed. Logging is
    configured here, once per entry point.
    """
    configure_logging(config.logging.level, config.logging.format)
    return Service(config, config_path=config_path).run(burst=burst)


class Service:
    """The long-lived worker around a :class:`Runner`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._clock = clock
        self.notifier = notifier or Notifier()
        self.wakeup = Wakeup()
        self.flags = SignalFlags(self.wakeup)
        self.tracker = SettleTracker(config.watch.settle_seconds, clock=clock)
        self.rule = InputRule(config.paths.inbox, excluded=own_paths(config))
        self.watcher = InboxWatcher(self.rule, self._on_file, polling=config.watch.polling)
        self._db: Database | None = None
        self._runner: Runner | None = None
        self._known: set[FileIdentity] = set()  # registered by us: rescans skip them
        self._queued = 0  # an estimate between two looks at the database
        self._pending_since: float | None = None
        self._next_rescan = self._next_status = self._next_watchdog = 0.0
        self._telemetry: Telemetry | None = None
        self._network: NetworkIntake | None = None  # the Storage SCP, the DICOMweb poll
        self._presence: WorkerPresence | None = None
        self._fatal: str | None = None  # the error type that ended the service, if any
        self._retention: RetentionSweeper | None = None
        self._registering: BackgroundRegistrar | None = None  # hashes off the main loop

    # -- lifecycle -----------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> int:
        """Bootstrap → loop → teardown; returns the exit status."""
        self.flags.install()
        status = EXIT_OK
        try:
            self._bootstrap(burst=burst)
            if burst:
                self._process_until_empty()
            else:
                self._loop()
        except ObserverFailedError as exc:
            log.error("observer_failed", detail=str(exc))  # noqa: TRY400 - no traceback needed
            status = EXIT_FAILED
        except CervixbatchError as exc:
            log.error("fatal_error", error=type(exc).__name__, detail=str(exc))  # noqa: TRY400
            status = EXIT_FAILED
            self._fatal = type(exc).__name__
        except Exception as exc:  # logged once, with its traceback; systemd decides what next
            log.exception("fatal_error", error=type(exc).__name__)
            status = EXIT_FAILED
            self._fatal = type(exc).__name__
        finally:
            self._teardown(status)
        return status

    def _bootstrap(self, *, burst: bool) -> None:
        log.info(
            "started",
            version=__version__,
            pid=os.getpid(),
            burst=burst,
            config=self.config.as_log_dict(),
        )
        limit, extend = self.config.database.outage_seconds, self.notifier.extend_start
        self._db = open_when_available(open_configured, self.config, limit, extend)
        stages = load_stages(self.config)
        self._runner = Runner(self.config, self._db, stages)
        self._registering = BackgroundRegistrar(self._runner.registrar, self.tracker, self.wakeup)
        self._presence = WorkerPresence.started(
            self._db, worker_id=self._runner.owner, kind="daemon", stages=stages, clock=self._clock
        )
        # Inside a batch the lease keeper's thread pings the watchdog and renews the worker row,
        # as long as the batch progresses.
        self._runner.leases.set_beat(self._signs_of_life_in_batch, self.notifier.watchdog_interval)
        self._runner.keepalive = self.notifier.watchdog  # while a commit waits out an outage
        self._retention = RetentionSweeper(self.config, self._db, clock=self._clock)
        if (metrics_address := self.config.metrics.listen_address) is not None:
            self._telemetry = Telemetry(self._db)
            self._telemetry.set_models(
                stages.cervix_version,
                stages.lesion_version,
                stages.precision,
                stages.runtime,
                cervix_model=stages.cervix_description,
                lesion_model=stages.lesion_description,
            )
            self._telemetry.serve(metrics_address)
        self._runner.recover()  # rows a dead process left "processing" go back to the queue
        self._runner.forward_pending()  # results a stop left unsent to the PACS
        # Received and pulled instances land in the inbox like any dropped file.
        self._network = NetworkIntake.started(self.config, self._runner.db)
        if not burst:
            self.watcher.start()  # before the scan, so nothing falls between the two
        self._scan("start")
        # Files already there produce no events: they settle like any other, once.
        deadline = self._clock() + self.config.watch.settle_seconds + SUPERVISE_EVERY_S
        while len(self.tracker) and self._clock() < deadline and self.flags.stop is None:
            self._register_settled()
            self.wakeup.wait(min(self.tracker.seconds_until_due() or 0.05, 0.25))
        self._register_settled()
        while self._registering.busy and self.flags.stop is None:  # what was there at start
            self._registering.wait_idle(SUPERVISE_EVERY_S)
            self._register_settled()
        counts = self._refresh_counts()
        if not burst:
            self.notifier.ready(status_line(counts))
            log.info("ready", **counts, waiting=len(self.tracker))

    def _loop(self) -> None:
        interval = self.notifier.watchdog_interval
        while self.flags.stop is None:
            try:
                self._step(interval)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                assert self._runner is not None
                ride_out(exc, self._runner, self.notifier, self.flags, self._telemetry)
                self._next_status = 0.0  # counts and the STATUS= line again, now

    def _step(self, interval: float | None) -> None:
        """One turn of the loop: signals, discovery, the liveness report, then a batch, a step of
        retention, or a sleep."""
        if self.flags.take_reload():
            self._reload()
        if self.watcher.supervise():
            self._scan("observer_restarted")  # events were lost while it was down
        self._register_settled()
        now = self._clock()
        if now >= self._next_rescan:
            self._scan("periodic")
        self._report_liveness(now, interval)
        if self._batch_due(now):
            self._run_batch()
            return  # check the flags between two batches, never within one
        if self._retention is not None and self._retention.due(now):
            self._retention.step()  # small steps, only while no batch is due
            return
        self.wakeup.wait(self._sleep_time(now, interval))

    def _teardown(self, status: int) -> None:
        reason = self.flags.stop or ("finished" if status == EXIT_OK else "error")
        counts: dict[str, int] = {}
        self._finish_in_flight()
        if self._runner is not None:
            try:
                counts = self._refresh_counts()
            except Exception as exc:  # noqa: BLE001 - a dead database must not block teardown
                log.warning("counts_unavailable", error=type(exc).__name__)
        self.notifier.stopping(f"stopping ({reason}); " + status_line(counts))
        log.info("stopping", reason=reason, **counts)
        if self._presence is not None:
            self._presence.stop(reason, error=self._fatal)
        if self._network is not None:
            self._network.stop()  # no new instances; associations in progress finish first
        self.watcher.stop()
        if self._registering is not None:
            self._registering.close()  # after the file in hand; the rest: the next scan
        if self._telemetry is not None:
            self._telemetry.close()
        if self._runner is not None:
            self._runner.close()
        if self._db is not None:
            self._db.dispose()
        self.flags.restore()
        self.wakeup.close()
        self.notifier.close()
        log.info("stopped", exit_status=status)

    def _finish_in_flight(self) -> None:
        """The drain: batches already claimed (the pipelined runner holds several) are
        processed and committed before the service stops taking work for good."""
        if self._runner is None or not self._runner.in_flight:
            return
        log.info("finishing_in_flight", batches=self._runner.in_flight)
        try:
            outcomes = self._runner.finish_in_flight()
        except Exception as exc:  # noqa: BLE001 - recovery requeues them; teardown goes on
            # its text may quote a statement, a path or a value: the type says enough
            log.warning("finish_failed", error=type(exc).__name__)
            return
        for outcome in outcomes:
            if self._telemetry is not None:
                self._telemetry.observe_batch(outcome)

    def _process_until_empty(self) -> None:
        """Burst mode: process everything queued, then return."""
        assert self._runner is not None
        while self.flags.stop is None and self._run_batch() is not None:
            pass

    # -- discovery -----------------------------------------------------------------------

    def _on_file(self, path: Path, closed: bool) -> None:
        """Take note of a path the observer heard of (runs in the observer thread)."""
        self.tracker.note(path, closed=closed)
        self.wakeup.wake()

    def _scan(self, trigger: str) -> None:
        """Walk the whole inbox: new or changed files become settle candidates."""
        started = self._clock()
        seen: set[FileIdentity] = set()
        files = noted = 0
        for path in self.rule.files():
            files += 1
            identity = identify(path)
            if identity is None:
                continue
            seen.add(identity)
            if identity not in self._known:
                self.tracker.note(path)
                noted += 1
        self._known &= seen  # forget files that are gone (archived, deleted, changed)
        self._next_rescan = self._clock() + self.config.watch.rescan_seconds
        log.info(
            "scan",
            trigger=trigger,
            files=files,
            new=noted,
            ms=round((self._clock() - started) * 1000, 1),
        )

    def _register_settled(self) -> None:
        """Hand settled files to the registering thread (hashed there, off this loop) and
        take in what it registered."""
        assert self._registering is not None
        for identity in self.tracker.take_settled():
            if identity not in self._known:
                self._registering.submit(identity)
        for done in self._registering.take_finished():
            registration = done.registration
            if registration is None:
                continue
            self._known.add(done.identity)
            if registration.created and registration.status is Status.QUEUED:
                self._queued += 1
                if self._pending_since is None:
                    self._pending_since = self._clock()

    # -- batches -------------------------------------------------------------------------

    def _batch_due(self, now: float) -> bool:
        assert self._runner is not None
        if self._runner.in_flight:
            return True  # hand back what finished, keep the pipeline fed
        if self._queued <= 0:
            return False
        if self._runner.paused is not None:
            return False  # disk trouble: the liveness report says so, the queue waits
        if self._queued >= self.config.batch.size or self._pending_since is None:
            return True
        return now - self._pending_since >= self.config.batch.max_wait_ms / 1000

    def _run_batch(self) -> BatchOutcome | None:
        assert self._runner is not None
        outcome = self._runner.process_batch()
        if outcome is not None and self._telemetry is not None:
            self._telemetry.observe_batch(outcome)
        if outcome is not None and self._presence is not None:
            finished = outcome.done + outcome.rejected + outcome.failed
            self._presence.finished(finished, failed=outcome.failed)
        if outcome is None:
            self._queued = 0
        else:
            # Retried inputs went back to the queue; a look at the database corrects the rest.
            self._queued = max(0, self._queued - outcome.inputs + outcome.retried)
            self._refresh_counts()
        if self._queued == 0:
            self._pending_since = None
        return outcome

    # -- systemd, status, reload ---------------------------------------------------------

    def _refresh_counts(self) -> dict[str, int]:
        assert self._runner is not None
        counts = self._runner.queue_counts()
        self._queued = counts.claimable  # queued, and the expired claims of dead workers
        if self._queued and self._pending_since is None:
            self._pending_since = self._clock()  # queued by a restart or another worker
        return counts.by_status

    def _signs_of_life_in_batch(self) -> None:
        """From inside a batch (the lease keeper's thread): WATCHDOG=1 to systemd, and
        the worker row's ``heartbeat_at`` (at most every few seconds)."""
        if self.notifier.watchdog_interval is not None:
            self.notifier.watchdog()
        if self._presence is not None:
            self._presence.beat()

    def _report_liveness(self, now: float, interval: float | None) -> None:
        """Between batches: the watchdog ping, the STATUS= line and the worker's presence."""
        if interval is not None and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval
        if now >= self._next_status:
            assert self._runner is not None
            counts = self._refresh_counts()
            disk = self._runner.disk_state()
            if self._telemetry is not None:
                self._telemetry.disk_low.set(1 if disk.low else 0)
            line = status_line(counts)
            self.notifier.status(f"paused: {disk.paused}; {line}" if disk.paused else line)
            if self._presence is not None:
                self._presence.state(paused=disk.paused, disk_free_mb=disk.free_mb)
                self._presence.beat(force=True)
            self._next_status = now + STATUS_EVERY_S

    def _sleep_time(self, now: float, interval: float | None) -> float:
        deadlines = [self._next_rescan, self._next_status, now + SUPERVISE_EVERY_S]
        if interval is not None:
            deadlines.append(self._next_watchdog)
        if self._queued > 0 and self._pending_since is not None:
            deadlines.append(self._pending_since + self.config.batch.max_wait_ms / 1000)
        due = self.tracker.seconds_until_due()
        if due is not None:
            deadlines.append(now + due)
        return max(0.0, min(deadlines) - now)

    def _reload(self) -> None:
        """SIGHUP: apply batch size, max wait and log level; name what needs a restart."""
        assert self._runner is not None
        self.notifier.reloading()
        self.config = reload_config(self.config, self._config_path)
        self._runner.apply_config(self.config)
        self.notifier.ready(status_line(self._refresh_counts()))
