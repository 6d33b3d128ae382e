"""A claimed input's registered bytes: read once from one of its paths, checked against
the sha256 they were registered under, and decoded.

An input is known by the digest of its bytes, and may have been seen at several paths.
The first path whose file still holds those bytes is the one used; a path holding other
bytes (a re-export, a colleague's copy under the same name) is reported, never decoded
for this input: its bytes are another input.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from cervixbatch.errors import InputRejected, RejectReason
from cervixbatch.imaging.frames import DecodedInput, ReadLimits
from cervixbatch.imaging.reader import decode_input, read_source
from cervixbatch.imaging.sop import SopClassFilter

__all__ = ["ChangedFile", "VerifiedRead", "read_registered"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChangedFile:
    """A file at one of the input's paths that now holds other bytes."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str
    inode: int = 0


@dataclasses.dataclass(slots=True)
class VerifiedRead:
    """What reading a claimed input gave: its frames, or why not; and any changed files."""

    decoded: DecodedInput | None = None
    path: str | None = None  # where the registered bytes were read
    rejection: InputRejected | None = None
    failure: str | None = None  # an internal error's text (for the database's detail)
    changed: list[ChangedFile] = dataclasses.field(default_factory=list)


def read_registered(
    paths: Sequence[str],
    sha256: str,
    limits: ReadLimits,
    *,
    min_working_side: int | None = None,
    sop_filter: SopClassFilter | None = None,
) -> VerifiedRead:
    """Read and decode the bytes registered as ``sha256`` from the first of ``paths`` that
    holds them. Never raises for a bad or missing file: the outcome says what happened."""
    outcome = VerifiedRead()
    first: InputRejected | None = None
    for path in paths:
        try:
            source = read_source(Path(path), limits.max_file_bytes)
        except InputRejected as exc:
            if not (exc.reason is RejectReason.UNREADABLE and not os.path.lexists(path)):
                first = first or exc  # else: moved or deleted since; try another sighting
            continue
        if source.sha256 != sha256:
            outcome.changed.append(
                ChangedFile(Path(path), source.size, source.mtime_ns, source.sha256, source.inode)
            )
            continue
        try:
            outcome.decoded = decode_input(
                source.data, limits, min_working_side=min_working_side, sop_filter=sop_filter
            )
        except InputRejected as exc:
            outcome.rejection = exc
        except Exception as exc:  # noqa: BLE001 - one bad input never stops the batch
            outcome.failure = f"reading failed: {type(exc).__name__}: {exc}"
        else:
            outcome.path = path
        return outcome
    if outcome.changed:
        new = ", ".join(sorted({changed.sha256 for changed in outcome.changed}))
        outcome.rejection = InputRejected(
            RejectReason.CHANGED,
            f"the file no longer holds the registered bytes (sha256 {sha256}) but other "
            f"bytes (sha256 {new}), registered as an input of their own",
        )
    else:
        outcome.rejection = first or InputRejected(
            RejectReason.UNREADABLE, "the file is no longer at any path it was seen at"
        )
    return outcome
