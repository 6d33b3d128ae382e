"""The daemon as systemd runs it: one `python -m cervixbatchd` subprocess on a temp config,
its JSON logs and its SQLite database, polled from outside."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from support.photos import draw_photo, write_photo

START_TIMEOUT = 90.0  # TensorFlow import and model load on a busy 2-core machine


# Inherited from a test runner started by systemd, they would talk to the wrong manager.
_SYSTEMD_VARIABLES = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}


class Daemon:
    """One `python -m cervixbatchd` process with its stdout (JSON logs) in a file; with
    ``fsync_delay``, on a slow disk (tests/support/slow_disk.py); with ``cli``, started as
    `cervixbatch run` instead (the same service)."""

    def __init__(
        self,
        config: Path,
        name: str,
        env: dict[str, str] | None = None,
        *args: str,
        fsync_delay: float | None = None,
        cli: bool = False,
    ) -> None:
        self.config = config
        self.stdout = config.parent / f"{name}.out.log"
        self.stderr = config.parent / f"{name}.err.log"
        environ = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
        environ.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
        launcher = ["-m", "cervixbatchd"]
        if fsync_delay is not None:
            launcher = [str(Path(__file__).with_name("slow_disk.py"))]
            environ["CERVIXBATCH_TEST_FSYNC_DELAY"] = str(fsync_delay)
        command = [sys.executable, *launcher, "--config", str(config), *args]
        if cli:
            command = [sys.executable, "-m", "cervixbatch.cli", "--config", str(config), "run"]
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                env=environ,
                cwd=config.parent,
            )

    def events(self) -> list[dict[str, Any]]:
        text = self.stdout.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_event(self, name: str, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events() if e["event"] == name), None)

        event = wait_for(found, timeout, f"event {name!r}", self)
        assert event is not None
        return event

    def stop(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def diagnostics(self) -> str:
        tail = self.stdout.read_text(errors="replace")[-3000:]
        err = self.stderr.read_text(errors="replace")[-2000:]
        return f"rc={self.process.poll()}\n--- stdout\n{tail}\n--- stderr\n{err}"


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, daemon: Daemon | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if daemon is not None and daemon.process.poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}\n{daemon.diagnostics()}")
        time.sleep(0.05)
    detail = daemon.diagnostics() if daemon else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{detail}")


def db_path(config: Path) -> Path:
    return config.parent / "state" / "cervixbatch.db"


def query(config: Path, sql: str) -> list[tuple[Any, ...]]:
    path = db_path(config)
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=10) as connection:
        try:
            return connection.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not migrated yet
            return []


def counts(config: Path) -> dict[str, int]:
    return dict(query(config, "SELECT status, COUNT(*) FROM inputs GROUP BY status"))


def photos(
    folder: Path,
    count: int,
    *,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    suffix: str = ".jpg",
) -> list[Path]:
    """Distinct photos (different bytes, so different inputs)."""
    out = []
    for i in range(count):
        rgb = draw_photo(*size, seed=seed + i)
        rgb[0, 0] = (i % 256, (i // 256) % 256, seed % 256)  # distinct even if drawn alike
        out.append(write_photo(folder / f"photo-{seed + i:03d}{suffix}", rgb))
    return out


def pg_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT status, COUNT(*) FROM inputs GROUP BY status"))
            return {str(status): int(count) for status, count in rows}
    except Exception:  # noqa: BLE001 - not migrated yet
        return {}
    finally:
        engine.dispose()
