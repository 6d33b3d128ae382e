"""Who owns a claim or a temp file, and whether that owner is provably gone.

An owner is a process named by its machine, its boot, its pid namespace, its pid and the
process's start time; the host name rides along as a label for people and proves nothing
(cloned VMs share host names, and so do containers with host networking). A pid alone is
not enough: pids are reused, and a temp file left by a worker killed last week must not be
taken for the in-flight file of whatever process has its pid today. So a process counts as
gone only when it is provably so:

- of this machine (the same machine id, ``/etc/machine-id``) and an earlier boot (another
  boot id, ``/proc/sys/kernel/random/boot_id``): everything of that boot is gone; or
- of this very kernel boot and pid namespace (so its pid means the same process here), and
  its pid is free or now belongs to a process that started at another time
  (``/proc/<pid>/stat``).

Anything else (another machine id, another pid namespace, an id that cannot be read, an
owner named by an older version, which carried only a host name cut to 40 characters)
cannot be judged from here, and counts as alive.

A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
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
_MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
NONE = "none"  # a machine or boot id that could not be read
_PID_MAX = 4_194_304  # the kernel's PID_MAX_LIMIT: no pid is larger
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.]+")
_HOST_LABEL = 32
_TOKEN = re.compile(
    r"(?P<host>[A-Za-z0-9._]{1,32})-(?P<machine>[0-9a-f]{16}|none)-(?P<boot>[0-9a-f]{16}|none)"
    r"-(?P<pidns>\d{1,10})-(?P<pid>\d{1,7})-(?P<start>\d{1,20})"
)
# Before machine ids: host (cut to 40 characters), 8 digits of the boot id, pid, start.
_LEGACY_TOKEN = re.compile(
    r"(?P<host>[A-Za-z0-9._]{1,40})-(?P<boot>[0-9a-f]{8}|noboot)-(?P<pid>\d{1,7})-(?P<start>\d{1,20})"
)
_TOKEN_FIELDS, _LEGACY_FIELDS = 6, 4
_FORBIDDEN_NAMES = frozenset({"", ".", ".."})
_STARTTIME_FIELD = 19  # /proc/<pid>/stat field 22, counted from the field after "(comm)"


class OwnerState(enum.Enum):
    """What can be known about an owner from this process."""

    ALIVE = "alive"  # this machine, boot and pid namespace, and the very process still runs
    DEAD = "dead"  # provably gone
    UNKNOWN = "unknown"  # cannot be judged from here: treat as alive


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessOwner:
    """One process, unambiguously: machine, boot, pid namespace, pid and start time."""

    host: str  # the host name, for people only: it identifies nothing
    machine: str  # 16 hex digits derived from the machine id, or "none"
    boot: str  # the first 16 hex digits of the kernel's boot id, or "none"
    pidns: int  # the pid namespace's inode; 0 when unknown
    pid: int
    start: int  # clock ticks after boot; 0 when the platform does not say (no /proc)
    legacy: bool = False  # named by an older version (host cut to 40, 8 digits of boot)

    def token(self) -> str:
        """The owner as one file-name-safe word, e.g.
        ``srv1-5d41402abc4b2a76-3f2a9c1e0b4d5e6f-4026531836-4242-1203344``."""
        if self.legacy:
            return f"{self.host}-{self.boot}-{self.pid}-{self.start}"
        return f"{self.host}-{self.machine}-{self.boot}-{self.pidns}-{self.pid}-{self.start}"

    @classmethod
    def parse(cls, text: str) -> ProcessOwner | None:
        """The owner a :meth:`token` (this version's or an older one's) names, or None
        when ``text`` is not one."""
        found = _TOKEN.fullmatch(text)
        if found is not None:
            owner = cls(
                found["host"],
                found["machine"],
                found["boot"],
                int(found["pidns"]),
                int(found["pid"]),
                int(found["start"]),
            )
        elif (found := _LEGACY_TOKEN.fullmatch(text)) is not None:
            owner = cls(
                found["host"],
                NONE,
                found["boot"],
                0,
                int(found["pid"]),
                int(found["start"]),
                legacy=True,
            )
        else:
            return None
        return owner if 0 < owner.pid <= _PID_MAX else None


def this_process() -> ProcessOwner:
    """The owner that this process is (computed again after a fork)."""
    return _owner_of_pid(os.getpid())


@functools.lru_cache(maxsize=4)
def _owner_of_pid(pid: int) -> ProcessOwner:
    return ProcessOwner(_host(), _machine(), _boot(), _pid_namespace(), pid, _start_time(pid) or 0)


def owned_name(prefix: str, name: str) -> str:
    """A file name that says this process owns it: ``<prefix><owner>-<random>-<name>``
    (``name`` cut to 100 characters, so the whole stays within 255 bytes)."""
    return f"{prefix}{this_process().token()}-{secrets.token_hex(4)}-{name[:100]}"


def parse_owned_name(name: str, prefix: str) -> tuple[ProcessOwner, str] | None:
    """The owner and the original name an :func:`owned_name` carries; None for any other
    name, whatever it holds (an original name that is no file name included)."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    for count in (_TOKEN_FIELDS, _LEGACY_FIELDS):
        fields = rest.split("-", count + 1)  # the owner's fields, random, name
        if len(fields) < count + 2:
            continue
        owner = ProcessOwner.parse("-".join(fields[:count]))
        original = fields[-1]
        if owner is None or owner.legacy != (count == _LEGACY_FIELDS):
            continue
        if original in _FORBIDDEN_NAMES or "/" in original or "\0" in original:
            return None
        return owner, original
    return None


def owner_state(owner: ProcessOwner) -> OwnerState:
    """Whether ``owner`` still runs, is provably gone, or cannot be judged from here."""
    me = this_process()
    if owner == me:
        return OwnerState.ALIVE
    machines_known = NONE not in {owner.machine, me.machine}
    if (
        owner.legacy  # a host name proves no machine
        or (machines_known and owner.machine != me.machine)  # another machine
        or NONE in {owner.boot, me.boot}
    ):
        return OwnerState.UNKNOWN
    if owner.boot != me.boot:
        # This machine has restarted since; without a machine id, another machine's boot
        # looks the same, and nothing can be said.
        return OwnerState.DEAD if machines_known else OwnerState.UNKNOWN
    if not me.pidns or owner.pidns != me.pidns:
        return OwnerState.UNKNOWN  # another container's pids: they mean nothing here
    return _pid_state(owner, me)


def _pid_state(owner: ProcessOwner, me: ProcessOwner) -> OwnerState:
    """ALIVE or DEAD for an owner of this very kernel boot and pid namespace."""
    if owner.pid == me.pid:
        return OwnerState.ALIVE if owner.start in {me.start, 0} else OwnerState.DEAD
    return OwnerState.ALIVE if _runs(owner) else OwnerState.DEAD


def _runs(owner: ProcessOwner) -> bool:
    """Whether a process of this boot and pid namespace still runs, as far as can be told."""
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
    return _HOST_CHARS.sub("_", socket.gethostname())[:_HOST_LABEL] or "host"


def _machine() -> str:
    """16 hex digits standing for this machine's id, or "none". The id is confidential
    (systemd's machine-id(5)): only a digest of it, keyed for this application, is shown."""
    for path in _MACHINE_ID_FILES:
        try:
            text = path.read_text(encoding="ascii").strip().lower()
        except (OSError, UnicodeDecodeError):
            continue
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return hashlib.sha256(f"cervixbatch-owner:{text}".encode()).hexdigest()[:16]
    return NONE


def _boot() -> str:
    try:
        text = (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return NONE
    digits = text.strip().replace("-", "").lower()
    return digits[:16] if re.fullmatch(r"[0-9a-f]{32}", digits) else NONE


def _pid_namespace() -> int:
    """The inode of this process's pid namespace (0 when unknown): pids are only
    comparable within one."""
    try:
        return (_PROC / "self" / "ns" / "pid").stat().st_ino
    except OSError:
        return 0


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
