"""What the inbox holds that is not an input, and why: ``cervixbatch report --ignored``.

Every regular file in the inbox becomes an input (done, rejected or failed) except what
:mod:`cervixbatch.intake.rules` says is not one. This module lists exactly those entries,
from the same walk, so that nothing in the inbox is skipped silently. It reads directory
entries only, never a file's bytes, and never follows a symlink.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from cervixbatch.intake.rules import MAX_DEPTH, IgnoreReason, InputRule

__all__ = [
    "IgnoredEntry",
    "display_text",
    "list_ignored",
    "render_ignored_json",
    "render_ignored_table",
]


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
    rule = InputRule(inbox, excluded=excluded, max_depth=max_depth)
    found: list[IgnoredEntry] = []
    for entry in rule.walk():
        if entry.reason is None:
            continue
        found.append(IgnoredEntry(Path(entry.relative), entry.reason, is_dir=entry.is_dir))
        if limit is not None and len(found) >= limit:
            break
    return sorted(found, key=lambda e: os.fsencode(e.path))


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
