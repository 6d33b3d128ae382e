"""Big, odd and slow inputs stay off the main loop (issue 22, item 6): a FIFO where a file
was, a file over max_file_mb, a file that takes seconds to hash. Real files, a real FIFO,
a real SQLite database, and the daemon as a real subprocess."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from support.daemon import START_TIMEOUT, Daemon, counts, photos, query, wait_for

from cervixbatch.config import load_config
from cervixbatch.intake.discovery import identify
from cervixbatch.intake.registration import Registrar
from cervixbatch.store.db import open_database


def test_a_fifo_put_where_a_settled_file_was_is_passed_over_not_waited_on(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A file that settled and was then replaced by a FIFO (before it was hashed) is passed
    over at once: nothing registered, nothing waiting for a writer."""
    config = load_config(make_config())
    db = open_database(config.database.url)
    path = photos(tmp_path / "inbox", 1)[0]
    identity = identify(path)
    assert identity is not None
    path.unlink()
    os.mkfifo(path)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(Registrar(db).register_identity(identity)),
        name="test-register",
    )
    try:
        worker.start()
        worker.join(timeout=10)
        hung = worker.is_alive()
        if hung:  # release the reader that waits for a writer, then fail
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(timeout=10)
        assert not hung, "registering a FIFO waited for a writer"
        assert outcome == [None]
        with db.read_session() as session:
            assert session.execute(text("SELECT COUNT(*) FROM inputs")).scalar_one() == 0
    finally:
        db.dispose()


def test_a_file_over_max_file_mb_is_rejected_before_it_is_hashed(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A file over the size limit is recorded rejected (file_too_large) keyed by where it
    was, not by a digest of its bytes, which were never read."""
    config = load_config(make_config(limits__max_file_mb=0.01))  # about 10 kB
    db = open_database(config.database.url)
    big = tmp_path / "inbox" / "big.jpg"
    big.write_bytes(os.urandom(20_000))
    try:
        registration = Registrar(db, max_file_bytes=10_485).register(big)
        assert registration is not None
        assert registration.status.value == "rejected"
        with db.read_session() as session:
            sha256, reason = session.execute(text("SELECT sha256, reason FROM inputs")).one()
        assert reason == "file_too_large"
        assert sha256 != hashlib.sha256(big.read_bytes()).hexdigest()
    finally:
        db.dispose()


@pytest.mark.slow
def test_the_daemon_passes_over_a_fifo_and_refuses_an_oversized_file_unhashed(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A FIFO dropped in the inbox of a running daemon is passed over with its reason
    logged, a file over max_file_mb is rejected without being hashed, and the photos
    around them are done."""
    config = make_config(limits__max_file_mb=0.1)  # about 100 kB: the photos are smaller
    daemon = daemons(config)
    daemon.wait_event("ready")
    inbox = tmp_path / "inbox"
    os.mkfifo(inbox / "pipe.jpg")
    big = inbox / "big.jpg"
    big.write_bytes(os.urandom(300_000))
    photos(inbox, 3)
    wait_for(lambda: counts(config) == {"done": 3, "rejected": 1}, 60, "3 done, 1 rejected", daemon)
    assert daemon.process.poll() is None
    ((sha256, reason),) = query(
        config, "SELECT sha256, reason FROM inputs WHERE status = 'rejected'"
    )
    assert reason == "file_too_large"
    assert sha256 != hashlib.sha256(big.read_bytes()).hexdigest()  # never read to be hashed
    ignored = [e for e in daemon.events() if e["event"] == "input_ignored"]
    assert ignored and ignored[0]["reason"] == "not_a_regular_file"
    assert daemon.stop() == 0


class _Pings:
    """A notify socket, as systemd's: whether READY=1 came, and when each WATCHDOG=1 did."""

    def __init__(self, address: Path) -> None:
        self.ready = threading.Event()
        self.times: list[float] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(address))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._listen, name="test-notify")
        self._thread.start()

    def _listen(self) -> None:
        while True:
            try:
                message = self._sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            if message.startswith("READY=1"):
                self.ready.set()
            elif message == "WATCHDOG=1" and self.ready.is_set():
                self.times.append(time.monotonic())
            elif message.startswith("STOPPING=1"):
                return

    def close(self) -> None:
        self._sock.close()
        self._thread.join(timeout=30)


@pytest.mark.slow
def test_hashing_a_huge_file_does_not_starve_the_watchdog(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """While the daemon hashes a large (sparse) file for seconds, WATCHDOG=1 keeps coming
    at its interval: the hashing runs off the main loop."""
    # Paused by the disk watermark: the file is registered, never read whole by a batch.
    config = make_config(limits__max_file_mb=65536, limits__min_free_mb=1e12)
    pings = _Pings(tmp_path / "notify.sock")
    spans = []  # (start, end) of each file's hashing
    try:
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
        daemon = daemons(config, env=env)
        wait_for(pings.ready.is_set, START_TIMEOUT, "READY=1", daemon)
        # 1 GB first; larger (still sparse: no disk used) until hashing one takes 3 s.
        for n, gigabytes in enumerate((1, 4, 16), start=1):
            with (tmp_path / "inbox" / f"huge-{n}.bin").open("wb") as out:
                out.truncate(gigabytes << 30)
            start = time.monotonic()
            wait_for(lambda n=n: counts(config) == {"queued": n}, 600, "registered", daemon)
            spans.append((start, time.monotonic()))
            if spans[-1][1] - start >= 3.0:
                break
        assert daemon.stop() == 0
    finally:
        pings.close()
    longest = max(end - start for start, end in spans)
    assert longest >= 3.0, f"hashing 16 GB took {longest:.1f} s: too fast to show anything"
    gaps = []
    for start, end in spans:
        during = [t for t in pings.times if start <= t <= end]
        gaps += [b - a for a, b in zip([start, *during], [*during, end], strict=True)]
    assert max(gaps) < 2.0, f"no WATCHDOG=1 for {max(gaps):.1f} s while hashing"
