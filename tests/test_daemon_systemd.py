"""The shipped systemd unit and tmpfiles entry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.tools import require_executable

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "cervixbatch.service"
TMPFILES = REPO / "systemd" / "cervixbatch.tmpfiles.conf"
INSTALLED_BINARY = "/opt/cervixbatch/.venv/bin/cervixbatchd"


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong with the unit file."""
    analyze = require_executable("systemd-analyze", install="apt-get install systemd")
    # verify insists that ExecStart's binary exists: check a copy that points at this
    # checkout's console script instead of the /opt path of an installed system.
    binary = Path(sys.executable).parent / Path(INSTALLED_BINARY).name
    if not binary.is_file() and os.environ.get("CI") != "true":
        pytest.skip(f"{binary.name} is not installed here (pip install -e . installs it)")
    assert binary.is_file(), "the project is not installed in this environment"
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_BINARY in text
    copy = tmp_path / "cervixbatch.service"
    copy.write_text(text.replace(INSTALLED_BINARY, str(binary)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cervixbatch.service" not in result.stderr, result.stderr


def test_unit_is_a_hardened_notify_service() -> None:
    """Type=notify with a watchdog, a dedicated user, explicit writable folders, and
    MemoryDenyWriteExecute off because TensorFlow JIT-compiles code."""
    settings = _settings(UNIT.read_text(encoding="utf-8"))
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["User"] == ["cervixbatch"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["ExecStart"] == [f"{INSTALLED_BINARY} --config /etc/cervixbatch/config.toml"]
    assert int(settings["TimeoutStartSec"][0]) >= 300
    assert int(settings["WatchdogSec"][0]) >= 60
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["MemoryDenyWriteExecute"] == ["no"]
    writable = set(settings["ReadWritePaths"])
    for folder in ("inbox", "outbox", "archive", "db"):
        assert f"/var/lib/cervixbatch/{folder}" in writable


def test_tmpfiles_creates_every_writable_folder_for_the_service_user() -> None:
    """Every ReadWritePaths folder has a tmpfiles line: owner cervixbatch, mode 0750."""
    writable = set(_settings(UNIT.read_text(encoding="utf-8"))["ReadWritePaths"])
    created = {}
    for line in TMPFILES.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, path, mode, user, group, age = re.split(r"\s+", line.strip())
        assert (kind, mode, user, group, age) == ("d", "0750", "cervixbatch", "cervixbatch", "-")
        created[path] = mode
    assert writable <= set(created)
