"""``cervixbatch db check``: whether the database is sound and every output it names is there.

The database's own check (SQLite's ``integrity_check`` and ``foreign_key_check``), its
migration revision against the installed head, then every file named by a result whose
outputs were not purged: missing ones are counted by reason, with a few examples.
"""

from __future__ import annotations

import collections
import dataclasses
import stat
from pathlib import Path
from typing import Any

from cervixbatch.config import Config
from cervixbatch.store import maintenance
from cervixbatch.store.db import Database

__all__ = ["CheckReport", "MissingReason", "check_database"]

PAGE = 1000
EXAMPLES = 20


class MissingReason:
    """Why a named output is not usable (stable codes)."""

    NOT_FOUND = "not_found"  # nothing at the path
    OUTSIDE_OUTBOX = "outside_outbox"  # the path is not under paths.outbox (moved?)
    NOT_A_REGULAR_FILE = "not_a_regular_file"  # a folder, a symbolic link, a device
    EMPTY = "empty"  # zero bytes: a write that never completed
    UNREADABLE = "unreadable"  # its folder cannot be searched


@dataclasses.dataclass(slots=True)
class CheckReport:
    """What ``db check`` found; ``ok`` is its exit status."""

    dialect: str
    integrity: list[str] = dataclasses.field(default_factory=list)  # empty: sound
    integrity_checked: bool = False
    foreign_key_problems: int = 0
    revision: str | None = None
    head: str | None = None
    results_checked: int = 0
    results_purged: int = 0
    files_checked: int = 0
    missing: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    missing_by_kind: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per problem found."""
        out = [f"integrity: {line}" for line in self.integrity]
        if self.foreign_key_problems:
            out.append(f"{self.foreign_key_problems} rows point at rows that do not exist")
        if self.revision != self.head:
            out.append(
                f"the database is at revision {self.revision}, this version expects "
                f"{self.head}: run `cervixbatch db upgrade`"
            )
        total = sum(self.missing.values())
        if total:
            reasons = ", ".join(f"{reason} {count}" for reason, count in self.missing.items())
            out.append(f"{total} output files are missing ({reasons})")
        return out

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "ok": self.ok,
            "problems": self.problems,
            "database": {
                "dialect": self.dialect,
                "integrity_checked": self.integrity_checked,
                "integrity": "ok" if not self.integrity else self.integrity,
                "foreign_key_problems": self.foreign_key_problems,
                "revision": self.revision,
                "head": self.head,
            },
            "outputs": {
                "results_checked": self.results_checked,
                "results_purged": self.results_purged,
                "files_checked": self.files_checked,
                "missing": sum(self.missing.values()),
                "missing_by_reason": dict(self.missing),
                "missing_by_kind": dict(self.missing_by_kind),
                "examples": self.examples,
            },
        }


def check_database(config: Config, db: Database) -> CheckReport:
    """Runs every check (reads only)."""
    report = CheckReport(dialect=db.dialect)
    report.revision, report.head = db.revision(), db.head_revision()
    with db.read_session() as session:
        if db.dialect == "sqlite":
            report.integrity = maintenance.sqlite_integrity(session)
            report.foreign_key_problems = maintenance.foreign_key_problems(session)
            report.integrity_checked = True
    root = config.paths.outbox.resolve()
    after_id = 0
    while True:
        with db.read_session() as session:
            outputs, last, purged = maintenance.named_outputs(
                session, after_id=after_id, limit=PAGE
            )
        if not last:
            break
        report.results_purged += purged
        report.results_checked += len({o.result_id for o in outputs})
        for output in outputs:
            report.files_checked += 1
            reason = _problem(root, Path(output.path))
            if reason is not None:
                report.missing[reason] += 1
                report.missing_by_kind[output.kind] += 1
                if len(report.examples) < EXAMPLES:
                    report.examples.append(
                        {
                            "input_id": output.input_id,
                            "result_id": output.result_id,
                            "kind": output.kind,
                            "reason": reason,
                            "path": output.path,
                        }
                    )
        after_id = last
    return report


def _problem(root: Path, path: Path) -> str | None:
    """Why ``path`` is not a usable output (a :class:`MissingReason`), or None."""
    try:
        path.parent.resolve().relative_to(root)
        info = path.lstat()
    except ValueError:
        return MissingReason.OUTSIDE_OUTBOX
    except FileNotFoundError:
        return MissingReason.NOT_FOUND
    except OSError:
        return MissingReason.UNREADABLE
    if not stat.S_ISREG(info.st_mode):
        return MissingReason.NOT_A_REGULAR_FILE
    return MissingReason.EMPTY if info.st_size == 0 else None
