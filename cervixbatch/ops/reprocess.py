"""``cervixbatch reprocess``: queue inputs again — with new models, say — keeping their
earlier results.

A worker reads a re-queued input from where its bytes were seen, so each one is checked
first: a file with the same bytes must still be at one of its paths (the size, mtime and
inode recorded with those bytes count as the same bytes, as at registration; otherwise it
is hashed), or its archived copy in ``watch.archive``. The worker checks the bytes again
as it reads them. Inputs whose bytes are gone stay as
they are, each with a reason.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import stat
from pathlib import Path

import structlog

from cervixbatch.config import Config
from cervixbatch.intake.discovery import hash_file
from cervixbatch.store import reprocess_queries as store
from cervixbatch.store.db import Database

__all__ = ["Decision", "Outcome", "Verdict", "apply_plan", "plan_reprocess"]

log = structlog.get_logger(__name__)

_ARCHIVED = re.compile(r"^(\d{8})-")  # delivery.disposal names archived files <id>-<name>


class Verdict(enum.StrEnum):
    """What reprocess does with one selected input (the values are stable codes)."""

    QUEUE = "queue"
    SOURCE_MISSING = "source_missing"  # no file at any path its bytes were seen at
    SOURCE_CHANGED = "source_changed"  # files there, but with other bytes
    ALREADY_QUEUED = "already_queued"  # queued or processing: it will run anyway


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """One selected input and what happens to it."""

    candidate: store.Candidate
    verdict: Verdict
    detail: str
    found: store.SeenAt | None = None  # where its bytes are, when not a recorded sighting

    @property
    def queued(self) -> bool:
        """True when the input goes (or would go) back into the queue."""
        return self.verdict is Verdict.QUEUE


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What was (or, in a dry run, would be) done."""

    decisions: tuple[Decision, ...]
    requeued: tuple[int, ...]
    dry_run: bool

    def counts(self) -> dict[str, int]:
        """How many inputs got each verdict."""
        out = {verdict.value: 0 for verdict in Verdict}
        for decision in self.decisions:
            out[decision.verdict.value] += 1
        return out


def plan_reprocess(config: Config, db: Database, selection: store.Selection) -> list[Decision]:
    """Selects the inputs and checks, for each, that its bytes can still be read."""
    with db.read_session() as session:
        candidates = store.select_candidates(session, selection)
    archive = _ArchiveIndex(config.watch.archive)
    return [_decide(candidate, archive) for candidate in candidates]


def apply_plan(db: Database, decisions: list[Decision], *, dry_run: bool) -> Outcome:
    """Re-queues the inputs whose bytes were found (nothing, in a dry run)."""
    chosen = [d for d in decisions if d.queued]
    requeued: list[int] = []
    if not dry_run and chosen:
        with db.session() as session:
            for decision in chosen:
                if decision.found is not None:
                    store.add_sighting(session, decision.candidate.id, decision.found)
            requeued = store.requeue(session, [d.candidate.id for d in chosen])
    outcome = Outcome(decisions=tuple(decisions), requeued=tuple(requeued), dry_run=dry_run)
    log.info("reprocess", dry_run=dry_run, requeued=len(requeued), **outcome.counts())
    return outcome


def _decide(candidate: store.Candidate, archive: _ArchiveIndex) -> Decision:
    if not candidate.status.terminal:
        return Decision(candidate, Verdict.ALREADY_QUEUED, f"already {candidate.status.value}")
    changed = 0
    for seen in candidate.sightings:
        match = _same_bytes(Path(seen.path), candidate, seen)
        if match is _Match.SAME:
            return Decision(candidate, Verdict.QUEUE, "its bytes are where they were seen")
        if isinstance(match, store.SeenAt):
            return Decision(candidate, Verdict.QUEUE, "its bytes are where they were seen", match)
        changed += match is _Match.OTHER
    for path in archive.paths(candidate.id):
        match = _same_bytes(path, candidate, None)
        if isinstance(match, store.SeenAt):
            return Decision(candidate, Verdict.QUEUE, "its bytes are in the archive", match)
    places = len(candidate.sightings)
    if changed:
        return Decision(
            candidate,
            Verdict.SOURCE_CHANGED,
            f"{changed} of the {places} paths it was seen at now hold other bytes",
        )
    return Decision(
        candidate,
        Verdict.SOURCE_MISSING,
        f"no file with its bytes at the {places} paths it was seen at, nor in the archive",
    )


class _Match(enum.Enum):
    SAME = "same"  # the recorded (size, mtime): the bytes registration hashed
    OTHER = "other"  # a file, with other bytes
    NONE = "none"  # no regular file there


def _same_bytes(
    path: Path, candidate: store.Candidate, seen: store.SeenAt | None
) -> _Match | store.SeenAt:
    """Whether ``path`` holds the candidate's bytes: SAME, or a new sighting of them."""
    info = _regular_file(path)
    if info is None:
        return _Match.NONE
    if (
        seen is not None
        and (info.st_size, info.st_mtime_ns) == (seen.size, seen.mtime_ns)
        and seen.inode in {0, info.st_ino}  # a copy over it (cp -p) is another inode: hashed
    ):
        return _Match.SAME
    if info.st_size != candidate.size_bytes:
        return _Match.OTHER
    try:
        same = hash_file(path) == candidate.sha256
    except OSError:
        return _Match.NONE
    found = store.SeenAt(str(path), info.st_size, info.st_mtime_ns, info.st_ino)
    return found if same else _Match.OTHER


def _regular_file(path: Path) -> os.stat_result | None:
    """The file's status when it is a regular file (a symbolic link is never followed)."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


class _ArchiveIndex:
    """The archive folder's files by input id, listed once (it may hold months of files)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_id: dict[int, list[Path]] | None = None

    def paths(self, input_id: int) -> list[Path]:
        if self._by_id is None:
            self._by_id = {}
            try:
                entries = list(os.scandir(self.folder))
            except OSError:
                entries = []
            for entry in entries:
                match = _ARCHIVED.match(entry.name)
                if match:
                    self._by_id.setdefault(int(match.group(1)), []).append(Path(entry.path))
        return sorted(self._by_id.get(input_id, []))
