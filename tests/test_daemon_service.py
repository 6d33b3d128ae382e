"""The daemon as systemd runs it: a real subprocess on a temp config, a real inbox and a
real SQLite database, polled from outside. Each start costs a TensorFlow import, so each
test starts as few daemons as its behaviour needs."""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.daemon import START_TIMEOUT, Daemon, counts, photos, query, wait_for
from support.dicom_fixtures import vl_image
from support.photos import draw_photo

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.slow


# -- discovery -------------------------------------------------------------------------


def test_files_present_at_start_and_dropped_later_become_done_with_outputs(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Files already in the inbox and files dropped later (one renamed from a copy tool's
    temp name) become done rows with their outputs; hidden files and symlinks never do."""
    config = make_config()
    inbox = tmp_path / "inbox"
    photos(inbox, 1, seed=0)
    photos(inbox / "sub", 1, seed=1)
    outside = photos(tmp_path / "outside", 1, seed=9)[0]
    daemon = daemons(config)
    daemon.wait_event("ready")
    photos(inbox, 1, seed=2)
    partial = photos(inbox / "late", 1, seed=3, suffix=".png")[0]
    temp = partial.with_name(partial.name + ".part")
    partial.rename(temp)
    (inbox / ".hidden.jpg").write_bytes(outside.read_bytes())
    (inbox / "link.jpg").symlink_to(outside)
    time.sleep(1.0)
    temp.rename(partial)  # the copy finished: now it is an input
    wait_for(lambda: counts(config).get("done") == 4, 60, "4 done", daemon)
    assert daemon.stop() == 0
    rows = query(config, "SELECT path, sha256 FROM inputs")
    assert sorted(Path(p).name for p, _ in rows) == [
        "photo-000.jpg",
        "photo-001.jpg",
        "photo-002.jpg",
        "photo-003.png",
    ]
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in {s for _, s in rows}
    outputs = query(
        config, "SELECT cervix_mask_path, lesion_mask_path, overlay_path, crop_path FROM results"
    )
    assert len(outputs) == 4
    assert all(Path(p).is_file() for row in outputs for p in row if p)


def test_a_file_written_in_chunks_is_processed_once_complete(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A file written in ten chunks over six seconds is taken once, whole: one input whose
    sha256 is that of the complete file."""
    config = make_config(watch__settle_seconds=1.0)
    daemon = daemons(config)
    daemon.wait_event("ready")
    source = photos(tmp_path / "src", 1, size=(640, 480), seed=5, suffix=".png")[0]
    data = source.read_bytes()
    chunk = -(-len(data) // 10)
    target = tmp_path / "inbox" / "slow.png"
    with target.open("wb") as handle:  # one handle, as cp or an SMB client writes
        for start in range(0, len(data), chunk):
            handle.write(data[start : start + chunk])
            handle.flush()
            time.sleep(0.6)
    wait_for(lambda: counts(config).get("done") == 1, 30, "the file done", daemon)
    time.sleep(0.5)
    assert daemon.stop() == 0
    rows = query(config, "SELECT sha256, status FROM inputs")
    assert rows == [(hashlib.sha256(data).hexdigest(), "done")]


# -- crash and stop --------------------------------------------------------------------


def test_sigkill_mid_batch_then_restart_processes_every_input_exactly_once(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """After SIGKILL in the middle of a batch, a restart requeues the dead process's
    inputs: every input ends done exactly once and no temp file is left in the outbox."""
    config = make_config(batch__size=2, batch__max_wait_ms=0)
    files = photos(tmp_path / "inbox", 24, size=(1024, 768))
    first = daemons(config, "first")

    def in_flight() -> bool:
        now = counts(config)
        return now.get("processing", 0) > 0 and now.get("done", 0) >= 2

    wait_for(in_flight, START_TIMEOUT, "a batch in flight after some are done", first)
    first.process.kill()
    first.process.wait(timeout=30)
    left_processing = counts(config).get("processing", 0)
    assert left_processing > 0, "the kill did not land inside a batch"
    second = daemons(config, "second")
    wait_for(lambda: counts(config).get("done") == len(files), 120, "all done", second)
    assert second.stop() == 0
    recovered = [e for e in second.events() if e["event"] == "recovered"]
    assert recovered
    assert recovered[0]["requeued"] == left_processing
    assert counts(config) == {"done": len(files)}
    per_input = query(config, "SELECT input_id, COUNT(*) FROM results GROUP BY input_id")
    assert len(per_input) == len(files)
    assert all(n == 1 for _, n in per_input)
    assert not list((tmp_path / "outbox").rglob(".tmp-*"))


def test_sigterm_drains_the_batch_in_hand_exits_0_and_a_restart_finishes(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """SIGTERM with work in flight commits the batch in hand and exits 0 within the drain
    timeout; nothing is left processing, and a restart (in burst mode) finishes the rest."""
    config = make_config(batch__size=2, batch__max_wait_ms=0)
    files = photos(tmp_path / "inbox", 16, size=(1024, 768))
    first = daemons(config, "first")
    wait_for(lambda: counts(config).get("processing", 0) > 0, START_TIMEOUT, "a batch", first)
    started = time.monotonic()
    assert first.stop(timeout=30) == 0
    assert time.monotonic() - started < 30
    after_stop = counts(config)
    assert after_stop.get("processing", 0) == 0
    assert after_stop.get("queued", 0) > 0, "everything finished before the signal landed"
    stopping = first.wait_event("stopping", timeout=1)
    assert stopping["reason"] == "SIGTERM"
    second = daemons(config, "second", None, "--burst")  # processes what is there, exits
    assert second.process.wait(timeout=120) == 0, second.diagnostics()
    assert counts(config) == {"done": len(files)}
    assert not any(e["event"] == "recovered" for e in second.events())


def test_a_second_sigterm_exits_at_once(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A second SIGTERM during the drain ends the process at once, with a non-zero status."""
    # One batch of 24 large photos in flight: its drain takes seconds even on an idle
    # machine, so the second signal surely lands inside it.
    config = make_config(batch__size=24, batch__max_wait_ms=0, output__overlay_max_side=0)
    photos(tmp_path / "inbox", 24, size=(3200, 2400))
    daemon = daemons(config)
    wait_for(lambda: counts(config).get("processing", 0) > 0, START_TIMEOUT, "a batch", daemon)
    daemon.process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    daemon.process.send_signal(signal.SIGTERM)
    status = daemon.process.wait(timeout=10)
    assert status == -signal.SIGTERM  # the kernel's default action: no drain, no cleanup
    assert not any(e["event"] == "stopped" for e in daemon.events())


# -- systemd, logs, reload -------------------------------------------------------------


def test_sd_notify_ready_watchdog_and_stopping_reach_the_socket(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """With NOTIFY_SOCKET and WATCHDOG_USEC set, the daemon sends READY=1, WATCHDOG=1 pings,
    STATUS= with counts, and STOPPING=1 on SIGTERM."""
    config = make_config()
    photos(tmp_path / "inbox", 2)
    address = tmp_path / "notify.sock"
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(0.2)

        def drain() -> list[str]:
            try:
                while True:
                    received.append(sock.recv(4096).decode())
            except TimeoutError:
                return received

        env = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "2000000"}
        daemon = daemons(config, env=env)

        def pinged_after_ready() -> bool:
            lines = drain()
            ready = [i for i, m in enumerate(lines) if "READY=1" in m.split("\n")]
            return bool(ready) and any(m == "WATCHDOG=1" for m in lines[ready[0] :][1:])

        wait_for(pinged_after_ready, START_TIMEOUT, "READY=1 then WATCHDOG=1", daemon)
        time.sleep(1.5)  # at least one more ping: they repeat every WATCHDOG_USEC / 2
        assert daemon.stop() == 0
        drain()
    assert sum(m == "WATCHDOG=1" for m in received) >= 2
    ready = next(m for m in received if m.startswith("READY=1"))
    assert "STATUS=" in ready
    assert any(m.startswith("STATUS=") and "done" in m for m in received)
    assert received[-1].startswith("STOPPING=1")


def test_logs_of_a_dicom_run_carry_no_patient_identifiers(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A DICOM file dropped into a polled inbox is processed, and neither the daemon's
    logs nor its stderr carry the patient's name, ID or birth date."""
    config = make_config(watch__polling=True, logging__level="debug")
    daemon = daemons(config)
    daemon.wait_event("ready")
    staging = vl_image(tmp_path / "staging" / "exam.dcm", [draw_photo(160, 120, seed=3)])
    staging.rename(tmp_path / "inbox" / "exam.dcm")
    wait_for(lambda: counts(config).get("done") == 1, 60, "the DICOM done", daemon)
    assert daemon.stop() == 0
    assert any(e["event"] == "input_done" for e in daemon.events())
    logs = daemon.stdout.read_text(encoding="utf-8") + daemon.stderr.read_text(errors="replace")
    for secret in ("Doe", "Jane", "PID-778899", "778899", "19700101"):
        assert secret not in logs


def test_sighup_reloads_batch_size_without_losing_work(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """SIGHUP applies a new batch size (logged in a "reloaded" event, other changes named
    as needing a restart) and every file dropped around it is processed."""
    config = make_config(batch__size=4, batch__max_wait_ms=300)
    daemon = daemons(config)
    daemon.wait_event("ready")
    before = photos(tmp_path / "inbox", 3, seed=0)
    make_config(batch__size=2, batch__max_wait_ms=300, watch__settle_seconds=0.5)
    daemon.process.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("reloaded", timeout=30)
    assert reloaded["batch_size"] == 2
    assert reloaded["applied"] == {"batch.size": 2}
    assert reloaded["needs_restart"] == ["watch.settle_seconds"]
    after = photos(tmp_path / "inbox", 6, seed=10)
    total = len(before) + len(after)
    wait_for(lambda: counts(config).get("done") == total, 60, "all done", daemon)
    assert daemon.stop() == 0
    events = daemon.events()
    position = next(i for i, e in enumerate(events) if e["event"] == "reloaded")
    later = [e["inputs"] for e in events[position:] if e["event"] == "batch_done"]
    assert later
    assert max(later) <= 2
    assert counts(config) == {"done": total}
