"""Retention: removing old output files (``purge``, ``[retention] outputs_days``) and
forgetting old inputs (``[retention] rows_days``), recorded in the database.

Files go first, then the row records it (``outputs_purged_at``): a crash in between
leaves a row whose files a later purge finds gone, never a row that claims a removal
that did not happen. Only regular files inside the outbox are removed (a symbolic link
or a path elsewhere is left alone and counted), and only folders that end up empty.

Forgetting is decided under lock: a page of expired inputs is locked first, and their
files are removed and their rows deleted in that same transaction, so a ``reprocess``
that re-queues one of them meanwhile either comes first (the input is no longer
expired: nothing of it is touched) or waits (and finds it forgotten). It forgets
nothing while the inbox does not look like the one the daemon started with
(:mod:`cervixbatch.intake.inbox_mark`). Ages (``outputs_days``, ``rows_days``) count on the
database's clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError

from cervixbatch.config import Config
from cervixbatch.intake.inbox_mark import InboxMark, inbox_problem, keep_mark
from cervixbatch.store import retention_queries as store
from cervixbatch.store.db import Database

__all__ = ["PurgeReport", "RetentionSweeper", "forget_inputs", "purge_outputs"]

log = structlog.get_logger(__name__)

PAGE = 200  # results per transaction
FORGET_PAGE = 50  # inputs per transaction: their rows stay locked while their files go
SWEEP_EVERY_S = 60.0  # the daemon looks for expired outputs this often
SWEEP_STEP = 100  # and removes at most this many results' files per step


@dataclasses.dataclass(slots=True)
class PurgeReport:
    """What a purge removed (or, in a dry run, would remove)."""

    dry_run: bool = False
    results: int = 0  # results whose outputs were removed and recorded
    files: list[Path] = dataclasses.field(default_factory=list)
    bytes: int = 0
    already_gone: int = 0  # files a result names that were not there any more
    refused: int = 0  # paths outside the outbox or not regular files: left alone
    errors: int = 0  # files that could not be removed: their result stays unrecorded
    inputs_forgotten: int = 0
    inputs_kept: int = 0  # past rows_days, but a file of theirs is still in the inbox
    forget_skipped: str | None = None  # why nothing was forgotten (the inbox looked wrong)

    def as_dict(self) -> dict[str, object]:
        """Plain JSON values."""
        return {
            "dry_run": self.dry_run,
            "results": self.results,
            "files": [str(path) for path in self.files],
            "bytes": self.bytes,
            "already_gone": self.already_gone,
            "refused": self.refused,
            "errors": self.errors,
            "inputs_forgotten": self.inputs_forgotten,
            "inputs_kept": self.inputs_kept,
            "forget_skipped": self.forget_skipped,
        }


def purge_outputs(
    config: Config,
    db: Database,
    *,
    before: store.Cutoff,
    include_latest: bool,
    dry_run: bool = False,
    max_results: int | None = None,
) -> PurgeReport:
    """Removes the output files of results made before ``before`` (a moment, or an age
    on the database's clock) and records it."""
    report = PurgeReport(dry_run=dry_run)
    root = config.paths.outbox.resolve()
    after_id = 0
    while max_results is None or report.results < max_results:
        page = PAGE if max_results is None else min(PAGE, max_results - report.results)
        with db.read_session() as session:
            candidates = store.purge_candidates(
                session,
                before=before,
                include_latest=include_latest,
                limit=page,
                after_id=after_id,
            )
        if not candidates:
            break
        after_id = candidates[-1].result_id
        purged: list[int] = []
        for candidate in candidates:
            if _remove_files(root, candidate.paths, report, dry_run=dry_run):
                purged.append(candidate.result_id)
                if not dry_run and not candidate.input_active:
                    _remove_empty_folders(root, candidate.paths)
        if not dry_run:
            with db.session() as session:
                store.mark_purged(session, purged)
        report.results += len(purged)
    if report.results or report.errors:
        log.info(
            "outputs_purged",
            dry_run=dry_run,
            results=report.results,
            files=len(report.files),
            bytes=report.bytes,
            already_gone=report.already_gone,
            refused=report.refused,
            errors=report.errors,
        )
    return report


def forget_inputs(
    config: Config,
    db: Database,
    *,
    finished_before: store.Cutoff,
    inbox: InboxMark | None,
    dry_run: bool = False,
    max_inputs: int | None = None,
) -> PurgeReport:
    """Forgets inputs finished before the cutoff whose files have left the inbox: their
    output files first, then their rows, one locked page at a time. One whose file is
    still at a path it was seen at is kept (the daemon would otherwise take it again as
    new). Nothing is forgotten while ``inbox`` (the mark the daemon keeps) looks wrong."""
    report = PurgeReport(dry_run=dry_run)
    root = config.paths.outbox.resolve()
    after_id = 0
    while max_inputs is None or report.inputs_forgotten + report.inputs_kept < max_inputs:
        if _inbox_wrong(inbox, report):
            break
        opened = db.read_session() if dry_run else db.session()
        with opened as session:
            expired = store.expired_inputs(
                session,
                finished_before=finished_before,
                limit=FORGET_PAGE,
                after_id=after_id,
                lock=not dry_run,
            )
            if not expired:
                break
            after_id = expired[-1].input_id
            gone = [e for e in expired if not any(_regular_file(Path(p)) for p in e.sighting_paths)]
            report.inputs_kept += len(expired) - len(gone)
            # Looked at again after the look at the inbox: a share that went away while
            # it was looked at would have made every file seem gone.
            if _inbox_wrong(inbox, report):
                break
            forgettable = [
                item.input_id
                for item in gone
                if _remove_files(root, item.output_paths, report, dry_run=dry_run)
            ]
            forgotten = forgettable if dry_run else store.delete_inputs(session, forgettable)
        if not dry_run:
            for input_id in forgotten:
                _remove_empty_tree(root / f"{input_id:08d}")
        report.inputs_forgotten += len(forgotten)
    if report.inputs_forgotten:
        log.info(
            "inputs_forgotten",
            dry_run=dry_run,
            inputs=report.inputs_forgotten,
            kept=report.inputs_kept,
            files=len(report.files),
        )
    return report


def _inbox_wrong(inbox: InboxMark | None, report: PurgeReport) -> bool:
    """True (and logged, and noted in the report) when the inbox does not look right."""
    problem = inbox_problem(inbox)
    if problem is None:
        return False
    report.forget_skipped = problem
    log.warning("forget_skipped", reason=problem)
    return True


class RetentionSweeper:
    """The daemon's retention: a small step every minute or so, between batches."""

    def __init__(
        self,
        config: Config,
        db: Database,
        clock: Callable[[], float] = time.monotonic,
        *,
        inbox: InboxMark | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self._clock = clock
        self._next = 0.0
        # The mark kept in the inbox from the start: without it nothing is forgotten.
        if inbox is None and config.retention.rows_days > 0:
            inbox = keep_mark(config.paths.inbox)
            if inbox is None:
                log.warning("forget_disabled", reason="inbox_unmarked")
        self.inbox = inbox

    @property
    def enabled(self) -> bool:
        """True when ``outputs_days`` or ``rows_days`` is set."""
        retention = self.config.retention
        return retention.outputs_days > 0 or retention.rows_days > 0

    def due(self, now: float) -> bool:
        """Whether a step should run now."""
        return self.enabled and now >= self._next

    def step(self) -> int:
        """Removes up to ``SWEEP_STEP`` results' files (and forgets as many inputs);
        returns how many. The next step comes soon while there is more to do."""
        self._next = self._clock() + SWEEP_EVERY_S
        try:
            done = self._sweep()
        except SQLAlchemyError as exc:  # the database's trouble: the batches will say so
            log.warning("retention_failed", error=type(exc).__name__)
            return 0
        if done >= SWEEP_STEP:
            self._next = self._clock() + 1.0  # more to do: the next step soon, not at once
        return done

    def _sweep(self) -> int:
        retention = self.config.retention
        done = 0
        if retention.outputs_days > 0:
            report = purge_outputs(
                self.config,
                self.db,
                before=dt.timedelta(days=retention.outputs_days),
                include_latest=retention.include_latest,
                max_results=SWEEP_STEP,
            )
            done += report.results
        if retention.rows_days > 0:
            report = forget_inputs(
                self.config,
                self.db,
                finished_before=dt.timedelta(days=retention.rows_days),
                inbox=self.inbox,
                max_inputs=SWEEP_STEP,
            )
            done += report.inputs_forgotten
        return done


def _remove_files(root: Path, paths: Iterable[str], report: PurgeReport, *, dry_run: bool) -> bool:
    """Removes the files that lie in the outbox; False when one could not be removed."""
    ok = True
    for text in paths:
        path = Path(text)
        if not _inside(root, path):
            report.refused += 1
            continue
        try:
            info = path.lstat()
        except FileNotFoundError:
            report.already_gone += 1
            continue
        except OSError:
            report.errors += 1
            ok = False
            continue
        if not stat.S_ISREG(info.st_mode):
            report.refused += 1
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                report.already_gone += 1
                continue
            except OSError as exc:
                log.warning("purge_failed", error=exc.strerror)
                report.errors += 1
                ok = False
                continue
        report.files.append(path)
        report.bytes += info.st_size
    return ok


def _inside(root: Path, path: Path) -> bool:
    """True when ``path``'s folder lies inside the outbox (the file itself is not followed)."""
    try:
        path.parent.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return path.name not in {"", ".", ".."}


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _remove_empty_folders(root: Path, paths: Iterable[str]) -> None:
    """Removes the folders these files were in, and their parents, while they are empty."""
    for folder in sorted({Path(p).parent for p in paths}, key=lambda f: -len(f.parts)):
        current = folder
        while current != root and _inside(root, current):
            try:
                current.rmdir()
            except OSError:  # not empty (another run, a frame), or gone already
                break
            current = current.parent


def _remove_empty_tree(folder: Path) -> None:
    """Removes a forgotten input's folder tree bottom-up, keeping anything still in it."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for current, dirs, _files in os.walk(folder, topdown=False):
        for name in dirs:
            child = Path(current) / name
            if not child.is_symlink():
                with contextlib.suppress(OSError):  # not empty: something else lives there
                    child.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()
