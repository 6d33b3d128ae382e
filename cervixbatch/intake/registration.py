"""Registration: a file becomes an input in the queue, or a sighting of bytes already known.

A file whose (path, size, mtime, inode) was seen before is not read again; a new one is
hashed, and its digest is what the input is keyed by. A file that cannot be read, that
is over ``[limits] max_file_mb`` (checked before a byte is hashed), or whose name is not
text, is still accounted for: a rejected input keyed by where it was. A path that holds
no regular file any more when it is opened (a FIFO put in its place) is passed over:
it is opened non-blocking, so it cannot hang the caller.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import structlog

from cervixbatch.errors import RejectReason
from cervixbatch.imaging.verified import ChangedFile
from cervixbatch.intake.discovery import (
    FileIdentity,
    FileTooLargeError,
    NotRegularFileError,
    hash_file,
    identify,
    unreadable_digest,
)
from cervixbatch.store import queue
from cervixbatch.store.db import Database
from cervixbatch.store.schema import Status

__all__ = ["Registrar"]

log = structlog.get_logger(__name__)


class Registrar:
    """Records files into the queue (hashing only what is new)."""

    def __init__(self, db: Database, *, max_file_bytes: int | None = None) -> None:
        self._db = db
        self.max_file_bytes = max_file_bytes  # larger files are rejected without hashing

    def register(self, path: Path) -> queue.Registration | None:
        """Records one file (a known (path, size, mtime) is not hashed again); None when it
        is not a regular file or cannot be read."""
        identity = identify(path)
        if identity is None:
            return None
        return self.register_identity(identity)

    def register_identity(
        self, identity: FileIdentity, *, sha256: str | None = None
    ) -> queue.Registration | None:
        """Records a file whose identity (stat) is known; hashes it only when it is new.

        With ``sha256`` (bytes just read and hashed) it is neither looked up by identity
        nor hashed again: a file replaced by one of the same size and mtime is still new.
        """
        path_text, bad_name = _storable_path(identity.path)
        if sha256 is None:
            with self._db.read_session() as session:
                known = queue.known_sighting(
                    session, path_text, identity.size, identity.mtime_ns, identity.inode
                )
            if known is not None:
                return known
        keyed = (
            (sha256, RejectReason.UNREADABLE, None)
            if sha256 is not None
            else _content_key(identity, self.max_file_bytes)
        )
        if keyed is None:
            return None  # gone, or no regular file, before it could be read
        sha256, reason, rejection = keyed
        if bad_name:
            sha256 = unreadable_digest(identity)
            reason = RejectReason.UNREADABLE
            rejection = "the file name is not valid UTF-8 text: rename the file to process it"
        with self._db.session() as session:
            registration = queue.register(
                session,
                sha256=sha256,
                path=path_text,
                size=identity.size,
                mtime_ns=identity.mtime_ns,
                inode=identity.inode,
                status=Status.QUEUED if rejection is None else Status.REJECTED,
                reason=None if rejection is None else reason.value,
                detail=rejection,
            )
        # File names can carry patient names: logs name inputs by id and digest only.
        log.info(
            "input_registered" if registration.created else "input_seen_again",
            input_id=registration.input_id,
            sha256=sha256[:12],
            status=registration.status.value,
        )
        return registration

    def register_changed(self, input_id: int, sha256: str, changed: Iterable[ChangedFile]) -> None:
        """New bytes found at the paths of input ``input_id`` (whose digest is ``sha256``)
        are inputs of their own (a sighting of the same path); called once the old input's
        fate is committed."""
        for file in changed:
            identity = FileIdentity(file.path, file.size, file.mtime_ns, file.inode)
            registration = self.register_identity(identity, sha256=file.sha256)
            if registration is not None:
                log.info(
                    "input_changed",
                    input_id=input_id,
                    new_input_id=registration.input_id,
                    sha256=sha256[:12],
                    new_sha256=file.sha256[:12],
                )


def _storable_path(path: Path) -> tuple[str, bool]:
    """The path as stored text, and whether its name is not UTF-8.

    A name that is not UTF-8 (a byte-for-byte copy from another system) cannot be stored
    as text: it is kept escaped, and rejected keyed by where it was (so the same bytes
    under a proper name are processed), instead of failing every rescan.
    """
    storable = os.fsencode(path).decode("utf-8", "backslashreplace")
    return storable, storable != str(path)


def _content_key(
    identity: FileIdentity, max_bytes: int | None
) -> tuple[str, RejectReason, str | None] | None:
    """The digest the input is keyed by, the reason it is rejected for and why (None: it
    is not); None when the file is gone, or is no regular file, by the time it is opened."""
    too_large = (
        _refused_digest(identity),
        RejectReason.FILE_TOO_LARGE,
        f"the file is larger than the limit ({max_bytes} bytes, [limits] max_file_mb)",
    )
    if max_bytes is not None and identity.size > max_bytes:
        return too_large  # refused before a byte is read
    try:
        return hash_file(identity.path, max_bytes=max_bytes), RejectReason.UNREADABLE, None
    except FileNotFoundError:
        return None
    except NotRegularFileError:
        # A FIFO or device put where the file was: not an input, and never waited on.
        log.info("input_ignored", reason=RejectReason.NOT_A_REGULAR_FILE.value)
        return None
    except FileTooLargeError:
        return too_large
    except OSError as exc:
        # Still accounted for: a rejected input keyed by where and what it was, since its
        # bytes cannot be read to key it by content.
        reason = exc.strerror or type(exc).__name__
        return (
            unreadable_digest(identity),
            RejectReason.UNREADABLE,
            f"the file cannot be read: {reason}",
        )


def _refused_digest(identity: FileIdentity) -> str:
    """A stable key for a file refused for its size without reading it: where and what
    it was (the same bytes under another path are refused under another key)."""
    text = f"too large\0{identity.path}\0{identity.size}\0{identity.mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
