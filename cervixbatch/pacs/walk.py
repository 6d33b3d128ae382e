"""Walks over study dates: the daemon's poll (:class:`PacsPoller`) and ``cervixbatch pacs
backfill`` (:func:`backfill`), each with a cursor in the database.

The poll asks for the studies dated from the day before its cursor to today, so a study
that arrives late in the day is seen by the next poll; what was fetched is never fetched
again (:mod:`cervixbatch.store.pacs`). The backfill walks ``since`` to ``until`` in slices
of days, moving its cursor after each slice: run again after an interruption, it goes on
after the last finished slice; run again after it finished, it walks the whole range
afresh and fetches only what is new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Sequence

import structlog

from cervixbatch.pacs.source import DicomWebSource, PacsUnavailable, PullResult
from cervixbatch.store.db import Database
from cervixbatch.store.pacs import get_cursor, set_cursor

__all__ = ["BackfillResult", "PacsPoller", "backfill", "date_slices", "poll_once"]

log = structlog.get_logger(__name__)

POLL_CURSOR = "poll"
_DAY = dt.timedelta(days=1)


@dataclasses.dataclass(slots=True)
class BackfillResult:
    """What a backfill walked and fetched."""

    resumed_at: dt.date
    slices: int = 0
    found: int = 0
    new: int = 0
    fetched: int = 0


def date_slices(since: dt.date, until: dt.date, days: int) -> list[tuple[dt.date, dt.date]]:
    """``since`` .. ``until`` (inclusive) cut into spans of ``days`` days."""
    spans = []
    start = since
    while start <= until:
        end = min(until, start + (days - 1) * _DAY)
        spans.append((start, end))
        start = end + _DAY
    return spans


def backfill(
    source: DicomWebSource,
    db: Database,
    *,
    since: dt.date,
    until: dt.date,
    modalities: Sequence[str],
    dry_run: bool = False,
    slice_days: int = 1,
    on_slice: Callable[[dt.date, dt.date, PullResult], None] | None = None,
) -> BackfillResult:
    """Fetches what ``since`` .. ``until`` holds, slice by slice, resumable.

    Raises:
        PacsUnavailable: The PACS stopped answering; the slices done so far stay done.

    """
    name = f"backfill:{since:%Y%m%d}:{until:%Y%m%d}:{','.join(sorted(modalities))}"
    with db.read_session() as session:
        cursor = get_cursor(session, name)
    start = since
    if cursor is not None and not dry_run:
        done_until = dt.datetime.strptime(cursor, "%Y%m%d").replace(tzinfo=dt.UTC).date()
        if done_until < until:  # interrupted: go on after the last finished slice
            start = done_until + _DAY
    result = BackfillResult(resumed_at=start)
    for first, last in date_slices(start, until, slice_days):
        pulled = source.pull(first, last, modalities, dry_run=dry_run)
        result.slices += 1
        result.found += pulled.found
        result.new += pulled.new
        result.fetched += pulled.fetched
        if not dry_run:
            with db.session() as session:
                set_cursor(session, name, f"{last:%Y%m%d}")
        if on_slice is not None:
            on_slice(first, last, pulled)
    return result


def poll_once(source: DicomWebSource, db: Database, modalities: Sequence[str]) -> PullResult:
    """One poll: from the day before the cursor (or yesterday, the first time) to today."""
    today = dt.datetime.now(dt.UTC).date()
    with db.read_session() as session:
        cursor = get_cursor(session, POLL_CURSOR)
    since = today - _DAY
    if cursor is not None:
        since = dt.datetime.strptime(cursor, "%Y%m%d").replace(tzinfo=dt.UTC).date() - _DAY
    pulled = source.pull(since, today, modalities)
    with db.session() as session:
        set_cursor(session, POLL_CURSOR, f"{today:%Y%m%d}")
    return pulled


class PacsPoller:
    """Polls every ``poll_seconds`` in a thread; a PACS that is down is logged once per
    outage (and once again when it is back) and retried at the next poll, never fatal."""

    def __init__(
        self, source: DicomWebSource, db: Database, modalities: Sequence[str], seconds: float
    ) -> None:
        self.source, self.db, self.modalities, self.seconds = source, db, modalities, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trouble: str | None = None  # the kind of the outage being waited out

    def start(self) -> None:
        """Polls at once, then every ``seconds``, until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="cervixbatch-pacs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the loop (after the poll in hand) and closes the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.source.close()

    def poll(self) -> None:
        """One poll, its trouble logged once."""
        try:
            pulled = poll_once(self.source, self.db, self.modalities)
        except PacsUnavailable as exc:
            if self._trouble != exc.kind:
                log.warning("pacs_unavailable", kind=exc.kind, reason=str(exc))
                self._trouble = exc.kind
            return
        except Exception as exc:  # noqa: BLE001 - the database or the disk: next poll retries
            log.warning("pacs_poll_failed", error=type(exc).__name__)
            return
        if self._trouble is not None:
            log.info("pacs_available_again")
            self._trouble = None
        if pulled.fetched:
            log.info("pacs_polled", found=pulled.found, fetched=pulled.fetched)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.seconds)
