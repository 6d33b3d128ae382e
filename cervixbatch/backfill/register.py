"""The sources of a backfill into the queue: files whose (path, size, mtime, inode) is
known need no reading; the others are hashed on the cluster, then registered by the one
driver through the same :class:`~cervixbatch.intake.registration.Registrar` as
``process`` (the same rules for unreadable files and names that are not text).

An input whose bytes are known and done is not queued again: it is skipped by its
sha256 before any pixel is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cervixbatch.backfill.sources import SourceRejection
from cervixbatch.backfill.totals import BackfillTotals
from cervixbatch.intake.discovery import FileIdentity, hash_file, identify
from cervixbatch.intake.registration import Registrar
from cervixbatch.store import queue
from cervixbatch.store.backlog import done_by_other_pair, statuses_of
from cervixbatch.store.db import Database
from cervixbatch.store.reprocess_queries import requeue
from cervixbatch.store.schema import Status

__all__ = ["hash_here", "register_sources", "tally_inputs"]

Hasher = Callable[[Sequence[str]], dict[str, str]]
_CHUNK = 2000  # paths looked up and hashed together


def register_sources(  # noqa: PLR0917 - the run's parts, each once
    db: Database,
    registrar: Registrar,
    candidates: Iterable[Path | SourceRejection],
    totals: BackfillTotals,
    hasher: Hasher,
    pair: tuple[str, str],
) -> set[int]:
    """Registers every candidate; returns the ids of this run's inputs. Rejected manifest
    lines are counted by reason in ``totals``. An input done by another model pair
    (``pair``: the cervix and lesion versions of this run) is queued again: its next run
    keeps the earlier one's rows and files."""
    run = _Registering(db, registrar, totals, hasher, pair)
    chunk: list[Path] = []
    for candidate in candidates:
        if isinstance(candidate, SourceRejection):
            totals.sources += 1
            totals.rejected[candidate.reason.value] += 1
            continue
        chunk.append(candidate)
        if len(chunk) >= _CHUNK:
            run.chunk(chunk)
            chunk = []
    run.chunk(chunk)
    totals.inputs = len(run.ids)
    return run.ids


class _Registering:
    def __init__(
        self,
        db: Database,
        registrar: Registrar,
        totals: BackfillTotals,
        hasher: Hasher,
        pair: tuple[str, str],
    ) -> None:
        self.db = db
        self.registrar = registrar
        self.totals = totals
        self.hasher = hasher
        self.pair = pair
        self.ids: set[int] = set()

    def chunk(self, paths: Sequence[Path]) -> None:
        """Registers ``paths``: known sightings looked up, new files hashed at once."""
        identities = [identity for path in paths if (identity := identify(path)) is not None]
        known: dict[Path, queue.Registration] = {}
        with self.db.read_session() as session:
            for identity in identities:
                seen = queue.known_sighting(
                    session, str(identity.path), identity.size, identity.mtime_ns, identity.inode
                )
                if seen is not None:
                    known[identity.path] = seen
        digests = self.hasher([str(i.path) for i in identities if i.path not in known])
        done: set[int] = set()
        for identity in identities:
            registration = known.get(identity.path) or _register(self.registrar, identity, digests)
            if registration is None:
                continue  # gone before it could be read
            self.totals.sources += 1
            self.totals.new += registration.created
            if registration.status is Status.DONE:
                done.add(registration.input_id)
            self.ids.add(registration.input_id)
        self._requeue_other_pairs(done)

    def _requeue_other_pairs(self, done: set[int]) -> None:
        """Done by this pair: skipped (by sha256, nothing decoded); by another: queued."""
        if not done:
            return
        with self.db.session() as session:
            other = done_by_other_pair(session, sorted(done), self.pair)
            requeued = requeue(session, other)
        self.totals.already_done += len(done) - len(requeued)
        self.totals.requeued_other_pair += len(requeued)


def _register(
    registrar: Registrar, identity: FileIdentity, digests: dict[str, str]
) -> queue.Registration | None:
    # Hashed on the cluster; "" (unreadable there): the registrar reads it once more here
    # and records why it cannot be read.
    digest = digests.get(str(identity.path)) or None
    return registrar.register_identity(identity, sha256=digest)


def hash_here(paths: Sequence[str]) -> dict[str, str]:
    """The sha256 of each path, hashed by this process ("" where it cannot be read)."""
    digests = {}
    for path in paths:
        try:
            digests[path] = hash_file(Path(path))
        except OSError:
            digests[path] = ""
    return digests


def tally_inputs(db: Database, ids: set[int], totals: BackfillTotals) -> None:
    """Counts the run's inputs by their status now (rejections by reason)."""
    with db.read_session() as session:
        for status, reason in statuses_of(session, sorted(ids)):
            if status is Status.DONE:
                totals.done += 1
            elif status is Status.FAILED:
                totals.failed += 1
            elif status is Status.REJECTED:
                totals.rejected[reason or "unknown"] += 1
            else:
                totals.queued += 1
