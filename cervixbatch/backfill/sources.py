"""The SOURCE arguments of ``backfill``: folders walked with the one input rule, or
manifests listing one path per line (a ``.csv`` manifest: the ``path`` column).

A listed path that is not a regular file is not an error of the run: it is a rejection
with a reason, counted in the summary, and the other paths go on.
"""

from __future__ import annotations

import csv
import dataclasses
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from cervixbatch.errors import RejectReason
from cervixbatch.intake.rules import InputRule

__all__ = ["ManifestError", "SourceRejection", "expand_sources"]

_CSV_COLUMN = "path"


class ManifestError(ValueError):
    """A manifest that cannot be read at all (not text, a CSV without a path column)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SourceRejection:
    """A manifest line that names no file to process."""

    where: str  # "<manifest>:<line>", for the user (never logged)
    reason: RejectReason
    detail: str


def expand_sources(
    sources: Sequence[Path], *, excluded: Sequence[Path] = ()
) -> Iterator[Path | SourceRejection]:
    """Every candidate file of ``sources``, in order: a folder's inputs by the input rule
    (the outbox and database excluded), a manifest's listed paths; a listed path that is
    not a regular file comes as a :class:`SourceRejection`.

    Raises:
        ManifestError: A manifest that is not UTF-8 text or a CSV without a path column.

    """
    for source in sources:
        if source.is_dir():
            yield from InputRule(source.resolve(), excluded=excluded).files()
        else:
            yield from _manifest(source)


def _manifest(manifest: Path) -> Iterator[Path | SourceRejection]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{manifest}: a manifest is UTF-8 text, one path per line (or a CSV)"
        raise ManifestError(msg) from exc
    base = manifest.resolve().parent  # relative paths are relative to the manifest
    for number, listed in _listed(manifest, text):
        path = base / listed
        reason = _not_a_file(path)
        if reason is None:
            yield path
        else:
            yield SourceRejection(f"{manifest}:{number}", *reason)


def _listed(manifest: Path, text: str) -> Iterator[tuple[int, str]]:
    """(line number, path) of every non-empty entry."""
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or _CSV_COLUMN not in reader.fieldnames:
            msg = f"{manifest}: a CSV manifest needs a {_CSV_COLUMN!r} column"
            raise ManifestError(msg)
        for row in reader:
            value = (row.get(_CSV_COLUMN) or "").strip()
            if value:
                yield reader.line_num, value
        return
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield number, value


def _not_a_file(path: Path) -> tuple[RejectReason, str] | None:
    try:
        info = path.lstat()
    except OSError as exc:
        return RejectReason.UNREADABLE, f"no file at this path ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return RejectReason.NOT_A_REGULAR_FILE, "a symbolic link, not followed"
    if not stat.S_ISREG(info.st_mode):
        return RejectReason.NOT_A_REGULAR_FILE, "not a regular file (a folder or a device)"
    return None
