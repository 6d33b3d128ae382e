"""The daemon's parts on their own: settling, the inbox filter, sd_notify, signals, reload,
and observer supervision. Fast: no TensorFlow, no subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from support.paths import REPO

from cervixbatch.config import BatchConfig, Config, LoggingConfig, WatchConfig
from cervixbatch.intake.rules import InputRule
from cervixbatchd.notify import Notifier
from cervixbatchd.reload import plan_reload
from cervixbatchd.settle import SettleTracker
from cervixbatchd.watch import InboxWatcher, ObserverFailedError

if TYPE_CHECKING:
    from pathlib import Path


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- settle ------------------------------------------------------------------------------


def test_a_file_is_taken_only_after_it_stays_unchanged_for_settle_seconds(tmp_path: Path) -> None:
    """A noted file settles once two looks settle_seconds apart agree on size and mtime."""
    clock = FakeClock()
    tracker = SettleTracker(2.0, clock=clock)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 10)
    tracker.note(path)
    assert tracker.take_settled() == []
    clock.now += 1.9
    assert tracker.take_settled() == []
    clock.now += 0.2
    [identity] = tracker.take_settled()
    assert identity.path == path
    assert identity.size == 10
    assert len(tracker) == 0


def test_a_growing_file_is_not_taken(tmp_path: Path) -> None:
    """A file that grows between two looks starts its wait again, even without events."""
    clock = FakeClock()
    tracker = SettleTracker(1.0, clock=clock)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    tracker.note(path)
    tracker.take_settled()
    for size in range(2, 6):
        clock.now += 1.0
        path.write_bytes(b"x" * size)  # no note(): the due look itself sees the change
        assert tracker.take_settled() == []
    clock.now += 1.0
    [identity] = tracker.take_settled()
    assert identity.size == 5


def test_a_close_after_write_shortens_the_wait_but_keeps_the_check(tmp_path: Path) -> None:
    """After a close event the file still needs a second, unchanged look, only sooner."""
    clock = FakeClock()
    tracker = SettleTracker(2.0, clock=clock)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"abc")
    tracker.note(path, closed=True)
    assert tracker.take_settled() == []  # the first look is never enough
    assert tracker.seconds_until_due() == pytest.approx(1.0)
    clock.now += 1.0
    assert [i.path for i in tracker.take_settled()] == [path]


def test_symlinks_and_vanished_files_are_dropped(tmp_path: Path) -> None:
    """A symlink is never a candidate, and a file deleted while settling is forgotten."""
    clock = FakeClock()
    tracker = SettleTracker(0.5, clock=clock)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    link = tmp_path / "link.jpg"
    link.symlink_to(outside)
    gone = tmp_path / "gone.jpg"
    gone.write_bytes(b"x")
    tracker.note(link)
    tracker.note(gone)
    tracker.take_settled()
    gone.unlink()
    clock.now += 1.0
    assert tracker.take_settled() == []
    assert len(tracker) == 0


# -- inbox filter ------------------------------------------------------------------------


def test_inbox_filter_ignores_hidden_temp_symlinked_and_excluded_paths(tmp_path: Path) -> None:
    """Hidden or temp names anywhere on the path, symlinked folders and nested outputs
    are not inputs; ordinary files in subfolders are."""
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "out").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes(b"x")
    (inbox / "linked").symlink_to(elsewhere)
    inbox_filter = InputRule(inbox, excluded=[inbox / "out", tmp_path])
    assert inbox_filter.accepts(inbox / "sub" / "a.jpg")
    assert not inbox_filter.accepts(inbox / ".hidden.jpg")
    assert not inbox_filter.accepts(inbox / ".sync" / "a.jpg")
    assert not inbox_filter.accepts(inbox / "a.jpg.part")
    assert not inbox_filter.accepts(inbox / "linked" / "x.jpg")
    assert not inbox_filter.accepts(inbox / "out" / "1" / "overlay.jpg")
    assert not inbox_filter.accepts(tmp_path / "other.jpg")
    (inbox / "sub" / "a.jpg").write_bytes(b"a")
    assert list(inbox_filter.files()) == [inbox / "sub" / "a.jpg"]


# -- sd_notify ---------------------------------------------------------------------------


def _receive_all(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.5)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


def test_notifier_sends_to_a_path_socket(tmp_path: Path) -> None:
    """READY, WATCHDOG, STATUS and STOPPING arrive as datagrams on $NOTIFY_SOCKET."""
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        notifier = Notifier({"NOTIFY_SOCKET": str(address)})
        assert notifier.ready("0 queued")
        assert notifier.watchdog()
        assert notifier.stopping("bye")
        notifier.close()
        messages = _receive_all(sock)
    assert messages == ["READY=1\nSTATUS=0 queued", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]


def test_notifier_supports_the_abstract_namespace() -> None:
    """A NOTIFY_SOCKET starting with '@' names an abstract socket."""
    name = f"cervixbatch-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.status("hello")
        notifier.close()
        assert _receive_all(sock) == ["STATUS=hello"]


def test_notifier_is_silent_without_a_socket_and_honours_watchdog_pid() -> None:
    """Without NOTIFY_SOCKET nothing is sent; WATCHDOG_PID of another process disables pings."""
    assert not Notifier({}).ready("x")
    assert Notifier({}).watchdog_interval is None
    mine = Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval == pytest.approx(1.0)
    other = Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None


# -- signals -----------------------------------------------------------------------------


SIGNALS_IN_A_CHILD = """
import os, signal
from cervixbatchd.signals import SignalFlags, Wakeup
wakeup = Wakeup()
flags = SignalFlags(wakeup)
before = signal.getsignal(signal.SIGTERM)
assert flags.install()
try:
    os.kill(os.getpid(), signal.SIGHUP)
    assert wakeup.wait(1.0)
    assert flags.take_reload()
    assert not flags.take_reload()
    os.kill(os.getpid(), signal.SIGTERM)
    assert wakeup.wait(1.0)
    assert flags.stop == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
finally:
    flags.restore()
    wakeup.close()
assert signal.getsignal(signal.SIGTERM) == before
print("ok")
"""


def test_signals_only_set_flags_and_a_second_stop_signal_is_fatal() -> None:
    """SIGHUP sets the reload flag, SIGTERM the stop flag, and after it SIGTERM is default.

    Run in a child process of its own, as the daemon receives them: signals sent to the
    test runner itself land on whatever threads earlier tests' native libraries left.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])}
    child = subprocess.run(
        [sys.executable, "-c", SIGNALS_IN_A_CHILD],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stderr[-2000:]


# -- reload ------------------------------------------------------------------------------


def test_reload_applies_live_keys_and_names_the_rest() -> None:
    """Batch size, max wait and log level change now; other changes wait for a restart."""
    current = Config()
    new = Config(
        batch=BatchConfig(size=2, max_wait_ms=50, read_workers=3),
        logging=LoggingConfig(level="debug"),
        watch=WatchConfig(settle_seconds=5.0),
    )
    plan = plan_reload(current, new)
    assert plan.applied == {"batch.size": 2, "batch.max_wait_ms": 50, "logging.level": "debug"}
    assert plan.needs_restart == ("batch.read_workers", "watch.settle_seconds")
    assert plan.config.batch.size == 2
    assert plan.config.batch.read_workers == current.batch.read_workers
    assert plan.config.watch == current.watch


# -- observer supervision ----------------------------------------------------------------


def _wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_observer_is_restarted_and_hears_again(tmp_path: Path) -> None:
    """A handler exception kills the observer thread; supervise() sees it and restarts it."""
    inbox = tmp_path / "inbox"
    heard: list[Path] = []
    failures = {"left": 1}

    def on_file(path: Path, _closed: bool) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("handler bug")
        heard.append(path)

    watcher = InboxWatcher(InputRule(inbox), on_file)
    watcher.start()
    try:
        assert watcher.running
        assert not watcher.supervise()
        (inbox / "first.jpg").write_bytes(b"1")
        assert _wait_for(lambda: not watcher.running)
        assert watcher.supervise()
        assert watcher.running
        (inbox / "second.jpg").write_bytes(b"2")
        assert _wait_for(lambda: inbox / "second.jpg" in heard)
    finally:
        watcher.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_observer_that_keeps_dying_makes_the_service_fail(tmp_path: Path) -> None:
    """Past its restart budget, supervise() raises so the process exits non-zero."""
    inbox = tmp_path / "inbox"

    def on_file(_path: Path, _closed: bool) -> None:
        raise RuntimeError("handler bug")

    watcher = InboxWatcher(InputRule(inbox), on_file, max_restarts=1)
    watcher.start()
    try:
        (inbox / "a.jpg").write_bytes(b"1")
        assert _wait_for(lambda: not watcher.running)
        assert watcher.supervise()
        (inbox / "b.jpg").write_bytes(b"2")
        assert _wait_for(lambda: not watcher.running)
        with pytest.raises(ObserverFailedError, match="died 2 times"):
            watcher.supervise()
    finally:
        watcher.stop()


def test_a_removed_inbox_is_recreated_by_the_restart(tmp_path: Path) -> None:
    """When the watched inbox itself is deleted, the watch ends and supervise() restores it."""
    inbox = tmp_path / "inbox"
    watcher = InboxWatcher(InputRule(inbox), lambda _p, _c: None)
    watcher.start()
    try:
        inbox.rmdir()
        assert _wait_for(lambda: not watcher.running)
        assert watcher.supervise()
        assert inbox.is_dir()
        assert watcher.running
    finally:
        watcher.stop()
