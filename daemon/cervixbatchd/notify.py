"""sd_notify without a dependency: datagrams to systemd's ``$NOTIFY_SOCKET``.

The protocol is newline-separated ``KEY=VALUE`` assignments in one datagram on a unix
socket (sd_notify(3)). A socket name starting with ``@`` lives in the abstract namespace.
Without ``NOTIFY_SOCKET`` (started by hand, by a test, or with ``Type=simple``) every call
is silent, so the service never needs to know how it was started.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import structlog

from cervixbatch.store.schema import Status

__all__ = ["Notifier", "status_line"]

log = structlog.get_logger("cervixbatchd")


class Notifier:
    """Talks to the service manager: READY, WATCHDOG, STATUS, STOPPING."""

    def __init__(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._warned = False
        # The main loop and the lease keeper's thread both send.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens at all."""
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False when nobody listens or it failed."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._socket.sendto(payload, self._address)
            except OSError as exc:
                # A vanished manager must never stop the service; say so once, not every ping.
                if not self._warned:
                    log.warning("notify_failed", error=exc.strerror or str(exc))
                    self._warned = True
                return False
        return True

    def ready(self, status: str) -> bool:
        """Say the models are loaded and the first scan is registered."""
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        """Say the main loop is alive (systemd kills the service after ``WatchdogSec``)."""
        return self.send("WATCHDOG=1")

    def extend_start(self, seconds: float = 30.0) -> bool:
        """Ask for more time to start (waiting for the database is not hanging)."""
        usec = int(seconds * 1_000_000)
        return self.send(f"EXTEND_TIMEOUT_USEC={usec}", "STATUS=waiting for the database")

    def status(self, text: str) -> bool:
        """Set the one-line status that ``systemctl status`` shows."""
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        """Say a SIGHUP reload has begun (the next READY=1 ends it)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000  # systemd >= 253 wants it
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> bool:
        """Say shutdown has begun."""
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """Close the socket (the next send opens a new one)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    """Return the address to send to: a path, an abstract name (leading NUL), or None."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # Other forms (vsock:…) are for VMs; a service on a clinic server never sees them.
    log.warning("notify_socket_unsupported", socket=value)
    return None


def _watchdog_interval(env: os._Environ[str] | dict[str, str]) -> float | None:
    """Return half of ``WATCHDOG_USEC`` in seconds, when it is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a wrapper that exec'd us keeps it unset)
    return int(usec) / 1_000_000 / 2


def status_line(counts: dict[str, int]) -> str:
    """The queue in the few words of systemd's STATUS= line."""
    keys = [status.value for status in Status]
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in keys)
