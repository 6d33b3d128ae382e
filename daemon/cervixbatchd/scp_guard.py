"""What the Storage SCP lets a caller send: checked as the bytes arrive, and over time.

pynetdicom receives each instance into a temporary file (``STORE_RECV_CHUNKED_DATASET``)
and hands it over only once it is whole. Counting only then would let one peer fill the
disk, or send a file of any size, before a single check. So :class:`ReceiveGuard` looks
at every P-DATA PDU as it is read (``EVT_DATA_RECV``): the instance in progress must stay
within the size limit, the disk it is written to above the free-space watermark, and the
caller within its budget; otherwise the association is aborted at once and the partial
file removed.

A budget (:class:`CallerBudget`) belongs to a calling AE title and to a peer address, not
to an association: a sender that opens a new association for each instance still spends
from the same budget. Each is counted over a sliding hour: bytes received and instances
stored (``[dicom] caller_mb_per_hour``, ``caller_instances_per_hour``; 0: no limit).
"""

from __future__ import annotations

import collections
import contextlib
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from cervixbatch.outputs.diskspace import free_mb

__all__ = ["WINDOW_S", "CallerBudget", "ReceiveGuard"]

log = structlog.get_logger("cervixbatchd.scp")

WINDOW_S = 3600.0  # the budget's window: a sliding hour
_P_DATA_TF = 0x04
_DISK_CHECK_BYTES = 4 << 20  # the disk is looked at after every 4 MiB received
_MAX_KEYS = 4096  # callers remembered before those with nothing in the window are dropped


class CallerBudget:
    """Bytes and instances per calling AE title and per peer address, over a sliding hour."""

    def __init__(
        self,
        max_bytes: int,
        max_instances: int,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes  # 0: no limit
        self.max_instances = max_instances  # 0: no limit
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (time, bytes, instances) entries, oldest first
        self._spent: dict[str, collections.deque[tuple[float, int, int]]] = {}

    def spend(self, keys: tuple[str, ...], *, size: int = 0, instances: int = 0) -> str | None:
        """Counts what was received; returns the key over its budget now (None: none is)."""
        now = self._clock()
        with self._lock:
            if len(self._spent) > _MAX_KEYS:  # many callers ("*"): forget the quiet ones
                for key in [k for k, e in self._spent.items() if not self._over(e, now) and not e]:
                    del self._spent[key]
            over = None
            for key in keys:
                entries = self._spent.setdefault(key, collections.deque())
                entries.append((now, size, instances))
                if over is None and self._over(entries, now):
                    over = key
            return over

    def exhausted(self, keys: tuple[str, ...]) -> str | None:
        """The key already over its budget (an association from it is refused), or None."""
        now = self._clock()
        with self._lock:
            return next(
                (k for k in keys if k in self._spent and self._over(self._spent[k], now)), None
            )

    def _over(self, entries: collections.deque[tuple[float, int, int]], now: float) -> bool:
        while entries and now - entries[0][0] > self._window:
            entries.popleft()
        size = sum(e[1] for e in entries)
        count = sum(e[2] for e in entries)
        return bool(
            (self.max_bytes and size > self.max_bytes)
            or (self.max_instances and count > self.max_instances)
        )


class ReceiveGuard:
    """Checks each association's incoming bytes as they are read (pynetdicom's DUL thread)."""

    def __init__(
        self,
        *,
        max_instance_bytes: int,
        min_free_mb: float,
        folder: Path,
        budget: CallerBudget,
        keys: Callable[[Any], tuple[str, ...]],
    ) -> None:
        self._max_instance = max_instance_bytes
        self._min_free_mb = min_free_mb
        self._folders = (folder, Path(tempfile.gettempdir()))  # the inbox, pynetdicom's temp
        self._budget = budget
        self._keys = keys  # the association's (calling AE, peer) budget keys
        self._lock = threading.Lock()
        self._state: dict[int, list[int]] = {}  # id(assoc) -> [instance bytes, unchecked]

    def on_data(self, event: Any) -> None:
        """``EVT_DATA_RECV``: count the dataset bytes of a P-DATA PDU; abort when over."""
        data: bytes = event.data
        if not data or data[0] != _P_DATA_TF:
            return
        assoc = event.assoc
        received = 0
        new_message = False
        offset = 6  # PDU header: type, reserved, length (4 bytes)
        while offset + 6 <= len(data):
            (length,) = struct.unpack_from(">I", data, offset)
            if data[offset + 5] & 0x01:  # a command fragment: a new message begins
                new_message = True
            else:
                received += max(0, length - 2)
            offset += 4 + length
        with self._lock:
            state = self._state.setdefault(id(assoc), [0, 0])
            if new_message:
                state[0] = 0
            state[0] += received
            state[1] += received
            instance = state[0]
            look_at_disk = state[1] >= _DISK_CHECK_BYTES
            if look_at_disk:
                state[1] = 0
        reason = None
        if instance > self._max_instance:
            reason = "too_large"
        elif received and self._budget.spend(self._keys(assoc), size=received):
            reason = "caller_budget"
        elif look_at_disk and self.disk_low():
            reason = "disk_low"
        if reason is not None:
            self._refuse(assoc, reason, instance)

    def disk_low(self) -> bool:
        """True when the inbox's disk or the temporary folder's is below the watermark."""
        if self._min_free_mb <= 0:
            return False
        for folder in self._folders:
            try:
                if free_mb(folder) < self._min_free_mb:
                    return True
            except OSError:
                continue
        return False

    def forget(self, assoc: Any) -> None:
        """The association ended."""
        with self._lock:
            self._state.pop(id(assoc), None)

    def _refuse(self, assoc: Any, reason: str, size: int) -> None:
        calling = str(getattr(assoc.requestor, "ae_title", "") or "").strip()
        log.warning("dicom_scp_aborted", reason=reason, size=size, calling_ae=calling)
        _discard_partial(assoc)
        assoc.abort(block=False)  # from pynetdicom's own thread: queued, then sent


def _discard_partial(assoc: Any) -> None:
    """Removes the temporary file of the instance in progress (pynetdicom keeps it only
    until the C-STORE handler has run, which an aborted transfer never reaches); what is
    still in flight for it is written nowhere."""
    message: Any = getattr(getattr(assoc, "dimse", None), "message", None)
    handle = getattr(message, "_data_set_file", None)
    if message is None or handle is None:
        return
    message._data_set_file = _Nowhere(handle.name)  # noqa: SLF001 - pynetdicom's own slot
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(OSError, TypeError):
        Path(handle.name).unlink()


class _Nowhere:
    """Stands in for pynetdicom's temporary file once it is gone: writes go nowhere."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.file = self

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        return

    def close(self) -> None:
        return
