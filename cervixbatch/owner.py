"""Who owns a claim or a temp file, and whether that owner is provably gone.

An owner is a process named by host, boot, pid and the process's start time. A pid alone
is not enough: pids are reused, and a temp file left by a worker killed last week must
not be taken for the in-flight file of whatever process has its pid today. So a process
counts as gone only when it is provably so: on this host, and either of an earlier boot,
or its pid is free, or its pid now belongs to a process that started at another time
(``/proc/<pid>/stat``). On another host nothing can be proved; its owners count as alive.

A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import secrets
import socket
from pathlib import Path

__all__ = [
    "OwnerState",
    "ProcessOwner",
    "owned_name",
    "owner_state",
    "parse_owned_name",
    "this_process",
]

_PROC = Path("/proc")
_NO_BOOT = "noboot"
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.]+")
_TOKEN = re.compile(
    r"(?P<host>[A-Za-z0-9._]+)-(?P<boot>[0-9a-f]{8}|noboot)-(?P<pid>\d+)-(?P<start>\d+)"
)
_STARTTIME_FIELD = 19  # /proc/<pid>/stat field 22, counted from the field after "(comm)"


class OwnerState(enum.Enum):
    """What can be known about an owner from this host."""

    ALIVE = "alive"  # this host, and the very process still runs
    DEAD = "dead"  # this host, and provably gone
    UNKNOWN = "unknown"  # another host: treat as alive


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessOwner:
    """One process, unambiguously: host, boot, pid and start time (clock ticks after boot)."""

    host: str
    boot: str  # the first 8 hex digits of the kernel's boot id, or "noboot"
    pid: int
    start: int  # 0 when the platform does not say (no /proc)

    def token(self) -> str:
        """The owner as one file-name-safe word, e.g. ``srv1-3f2a9c1e-4242-1203344``."""
        return f"{self.host}-{self.boot}-{self.pid}-{self.start}"

    @classmethod
    def parse(cls, text: str) -> ProcessOwner | None:
        """The owner a :meth:`token` names, or None when ``text`` is not one."""
        found = _TOKEN.fullmatch(text)
        if found is None:
            return None
        return cls(found["host"], found["boot"], int(found["pid"]), int(found["start"]))


def this_process() -> ProcessOwner:
    """The owner that this process is (computed again after a fork)."""
    return _owner_of_pid(os.getpid())


@functools.lru_cache(maxsize=4)
def _owner_of_pid(pid: int) -> ProcessOwner:
    return ProcessOwner(_host(), _boot(), pid, _start_time(pid) or 0)


def owned_name(prefix: str, name: str) -> str:
    """A file name that says this process owns it: ``<prefix><owner>-<random>-<name>``
    (``name`` cut to 100 characters, so the whole stays within 255 bytes)."""
    return f"{prefix}{this_process().token()}-{secrets.token_hex(4)}-{name[:100]}"


def parse_owned_name(name: str, prefix: str) -> tuple[ProcessOwner, str] | None:
    """The owner and the original name an :func:`owned_name` carries; None for any other."""
    if not name.startswith(prefix):
        return None
    fields = name[len(prefix) :].split("-", 5)  # host, boot, pid, start, random, name
    if len(fields) < 6:
        return None
    owner = ProcessOwner.parse("-".join(fields[:4]))
    return None if owner is None else (owner, fields[5])


def owner_state(owner: ProcessOwner) -> OwnerState:
    """Whether ``owner`` still runs, is provably gone, or cannot be judged from here."""
    me = this_process()
    if owner.host != me.host:
        return OwnerState.UNKNOWN
    if _NO_BOOT not in {owner.boot, me.boot} and owner.boot != me.boot:
        return OwnerState.DEAD  # the machine has restarted since
    if owner.pid == me.pid:
        return OwnerState.ALIVE if owner.start in {me.start, 0} else OwnerState.DEAD
    return OwnerState.ALIVE if _runs(owner) else OwnerState.DEAD


def _runs(owner: ProcessOwner) -> bool:
    """Whether a process of this host and boot still runs, as far as can be told."""
    seen = _stat(owner.pid)
    if seen is not None:
        state, start = seen
        # A zombie writes nothing more; another start time means the pid was reused.
        return state not in {"Z", "X"} and (not owner.start or start == owner.start)
    # No /proc here, or the pid's entry is hidden from us (systemd's ProtectProc=invisible,
    # mount option hidepid): only whether the pid exists can be asked.
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _host() -> str:
    # Letters, digits and dots only: the token's fields are separated by dashes.
    return _HOST_CHARS.sub("_", socket.gethostname())[:40] or "host"


def _boot() -> str:
    try:
        text = (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text(encoding="ascii")
    except OSError:
        return _NO_BOOT
    digits = text.strip().replace("-", "")[:8].lower()
    return digits if re.fullmatch(r"[0-9a-f]{8}", digits) else _NO_BOOT


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks after boot; None when /proc does not say."""
    seen = _stat(pid)
    return seen[1] if seen is not None else None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from ``/proc/<pid>/stat``; None when it cannot be read."""
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name in parentheses may hold spaces and ")": the fields follow the last.
    fields = text.rpartition(")")[2].split()
    if len(fields) <= _STARTTIME_FIELD or not fields[_STARTTIME_FIELD].isdigit():
        return None
    return fields[0], int(fields[_STARTTIME_FIELD])
