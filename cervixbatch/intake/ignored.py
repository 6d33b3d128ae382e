"""What the inbox holds that is not an input, and why: ``cervixbatch report --ignored``.

Every regular file in the inbox becomes an input (done, rejected or failed) except what
the documentation says is ignored: hidden names, copy tools' temp names, symlinks (never
followed), things that are not regular files (FIFOs, sockets, devices), files nested
deeper than the scan goes, the service's own folders placed inside the inbox, and
folders that cannot be listed. This module lists exactly those, so that nothing in the
inbox is skipped silently. It reads directory entries only, never a file's bytes, and
never follows a symlink.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cervixbatch.intake.discovery import MAX_DEPTH, ignored_name_reason

if TYPE_CHECKING:
    from cervixbatch.config import Config

__all__ = [
    "IgnoreReason",
    "IgnoredEntry",
    "display_text",
    "list_ignored",
    "own_paths",
    "render_ignored_json",
    "render_ignored_table",
]


class IgnoreReason(enum.StrEnum):
    """Why an entry of the inbox is not an input (stable, machine-readable codes)."""

    HIDDEN = "hidden"
    TEMP_NAME = "temp_name"
    SYMLINK = "symlink"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    TOO_DEEP = "too_deep"
    OWN_FOLDER = "own_folder"
    UNLISTABLE_FOLDER = "unlistable_folder"


_DETAILS = {
    IgnoreReason.HIDDEN: "a hidden name (starting with a dot) is never an input",
    IgnoreReason.TEMP_NAME: "a copy tool's temp name: the file is taken once it is renamed",
    IgnoreReason.SYMLINK: "a symbolic link is never followed",
    IgnoreReason.NOT_A_REGULAR_FILE: "not a regular file (a FIFO, socket or device)",
    IgnoreReason.TOO_DEEP: f"nested more than {MAX_DEPTH} folders deep, past where the scan goes",
    IgnoreReason.OWN_FOLDER: "the service's own outbox, archive or database, never an input",
    IgnoreReason.UNLISTABLE_FOLDER: "the folder cannot be listed, so its files cannot be seen",
}


@dataclasses.dataclass(frozen=True, slots=True)
class IgnoredEntry:
    """One ignored entry: its path relative to the inbox, why, and in one sentence."""

    path: Path
    reason: IgnoreReason
    is_dir: bool = False

    @property
    def detail(self) -> str:
        """The reason as a sentence (folders say that their contents are ignored too)."""
        text = _DETAILS[self.reason]
        if self.is_dir and self.reason not in {
            IgnoreReason.TOO_DEEP,
            IgnoreReason.UNLISTABLE_FOLDER,
        }:
            text += "; a folder: nothing under it is looked at"
        return text

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the path as valid UTF-8 text (undecodable bytes escaped)."""
        return {
            "path": display_text(self.path, control=False),
            "reason": self.reason.value,
            "detail": self.detail,
            "folder": self.is_dir,
        }


def display_text(path: Path | str, *, control: bool = True) -> str:
    r"""A path as printable text: undecodable bytes as ``\xNN`` and (``control``) control
    characters such as newlines or terminal escapes as ``\n``, ``\x1b``…, so that a hostile
    name can neither break a table line nor drive the terminal."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if not control:
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def own_paths(config: Config) -> list[Path]:
    """What the service writes: should any of it lie inside the inbox, it is not an input."""
    paths = [config.paths.outbox, config.watch.archive]
    prefix = "sqlite:///"
    if config.database.url.startswith(prefix):
        database = Path(config.database.url[len(prefix) :])
        paths += [database.with_name(database.name + s) for s in ("", "-wal", "-shm", "-journal")]
    return paths


def list_ignored(
    inbox: Path,
    *,
    excluded: Sequence[Path] = (),
    max_depth: int = MAX_DEPTH,
    limit: int | None = None,
) -> list[IgnoredEntry]:
    """Every entry under ``inbox`` that the scan skips, sorted by path.

    A hidden, temp-named, symlinked or own folder is one entry (it is not looked into).
    Below ``max_depth`` folders every file is listed as too deep; ``limit`` bounds the
    listing (an inbox can be as large as a hostile sender makes it).
    """
    real_inbox = Path(os.path.realpath(inbox))
    real_excluded = {Path(os.path.realpath(p)) for p in excluded}
    found: list[IgnoredEntry] = []
    for entry in _walk(inbox, real_inbox, real_excluded, max_depth):
        found.append(entry)
        if limit is not None and len(found) >= limit:
            break
    return sorted(found, key=lambda e: os.fsencode(e.path))


def _walk(
    inbox: Path, real_inbox: Path, excluded: set[Path], max_depth: int
) -> Iterator[IgnoredEntry]:
    """Depth-first without recursion: nesting depth cannot exhaust Python's stack."""
    stack: list[tuple[Path, int]] = [(Path(), 0)]  # (folder relative to the inbox, depth)
    while stack:
        relative, depth = stack.pop()
        too_deep = depth > max_depth
        try:
            with os.scandir(inbox / relative) as listing:
                entries = sorted(listing, key=lambda e: e.name, reverse=True)
        except OSError:
            if relative.parts:  # the inbox itself missing is not an entry of it
                yield IgnoredEntry(relative, IgnoreReason.UNLISTABLE_FOLDER, is_dir=True)
            continue
        for entry in entries:
            path = relative / entry.name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue  # gone since it was listed
            is_dir = stat.S_ISDIR(mode)
            reason = _reason(entry.name, mode, real_inbox / path, excluded)
            if reason is not None:
                yield IgnoredEntry(path, reason, is_dir=is_dir)
            elif is_dir:
                stack.append((path, depth + 1))
            elif too_deep:
                yield IgnoredEntry(path, IgnoreReason.TOO_DEEP)


def _reason(name: str, mode: int, real: Path, excluded: set[Path]) -> IgnoreReason | None:
    by_name = ignored_name_reason(name)
    if by_name is not None:
        return IgnoreReason(by_name)
    if stat.S_ISLNK(mode):
        return IgnoreReason.SYMLINK
    if real in excluded:
        return IgnoreReason.OWN_FOLDER
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        return IgnoreReason.NOT_A_REGULAR_FILE
    return None


def render_ignored_json(inbox: Path, entries: Sequence[IgnoredEntry]) -> str:
    """One JSON object: the inbox, the count, and each entry (path, reason, detail)."""
    data = {
        "inbox": display_text(inbox, control=False),
        "count": len(entries),
        "ignored": [e.as_dict() for e in entries],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_ignored_table(inbox: Path, entries: Sequence[IgnoredEntry]) -> str:
    """Plain text columns: reason, path (control characters escaped), detail."""
    lines = [f"ignored in {display_text(inbox)}: {len(entries)}"]
    if entries:
        rows = [
            (e.reason.value, display_text(e.path) + ("/" if e.is_dir else ""), e.detail)
            for e in entries
        ]
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        lines.append(f"{'REASON':<{width[0]}}  {'PATH':<{width[1]}}  DETAIL")
        lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines) + "\n"
