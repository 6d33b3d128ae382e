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
from cervixbatch.store.backlog import statuses_of
from cervixbatch.store.db import Database
from cervixbatch.store.schema import Status

__all__ = ["hash_here", "register_sources", "tally_inputs"]

Hasher = Callable[[Sequence[str]], dict[str, str]]
_CHUNK = 2000  # paths looked up and hashed together


def register_sources(
    db: Database,
    registrar: Registrar,
    candidates: Iterable[Path | SourceRejection],
    totals: BackfillTotals,
    hasher: Hasher,
) -> set[int]:
    """Registers every candidate; returns the ids of this run's inputs. Rejected manifest
    lines are counted by reason in ``totals``."""
    ids: set[int] = set()
    chunk: list[Path] = []
    for candidate in candidates:
        if isinstance(candidate, SourceRejection):
            totals.sources += 1
            totals.rejected[candidate.reason.value] += 1
            continue
        chunk.append(candidate)
        if len(chunk) >= _CHUNK:
            _register_chunk(db, registrar, chunk, totals, hasher, ids=ids)
            chunk = []
    _register_chunk(db, registrar, chunk, totals, hasher, ids=ids)
    totals.inputs = len(ids)
    return ids


def _register_chunk(
    db: Database,
    registrar: Registrar,
    paths: Sequence[Path],
    totals: BackfillTotals,
    hasher: Hasher,
    *,
    ids: set[int],
) -> None:
    identities = [identity for path in paths if (identity := identify(path)) is not None]
    known: dict[Path, queue.Registration] = {}
    with db.read_session() as session:
        for identity in identities:
            seen = queue.known_sighting(
                session, str(identity.path), identity.size, identity.mtime_ns, identity.inode
            )
            if seen is not None:
                known[identity.path] = seen
    digests = hasher([str(i.path) for i in identities if i.path not in known])
    for identity in identities:
        registration = known.get(identity.path) or _register(registrar, identity, digests)
        if registration is None:
            continue  # gone before it could be read
        totals.sources += 1
        totals.new += registration.created
        if not registration.created and registration.status is Status.DONE:
            totals.already_done += 1
        ids.add(registration.input_id)


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
