"""Tests that need an outside tool skip on a user's machine and fail in CI (``CI=true``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = """
import sys
sys.path.insert(0, {tests!r})
from support.tools import require_executable

def test_needs_a_tool():
    require_executable("cervixbatch-no-such-tool", install="nowhere to get it")
"""


def _run_probe(folder: Path, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    (folder / "test_probe.py").write_text(PROBE.format(tests=str(TESTS)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_tool_skips_with_its_reason_but_fails_in_ci(tmp_path: Path) -> None:
    """The one helper skips, naming the tool, without CI, and fails the test with CI=true."""
    local = _run_probe(tmp_path, ci=None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout
    assert "cervixbatch-no-such-tool is not installed (nowhere to get it)" in local.stdout
    ci = _run_probe(tmp_path, ci="true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "CI=true, but cervixbatch-no-such-tool is not installed" in ci.stdout


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: p.name)
def test_no_test_skips_on_a_missing_tool_by_itself(path: Path) -> None:
    """Only support/tools.py decides what a missing tool means: no test module looks tools up or
    skips on its own account (which CI would never notice)."""
    if path.relative_to(TESTS).as_posix() in {"support/tools.py", Path(__file__).name}:
        return
    text = path.read_text(encoding="utf-8")
    assert "shutil.which(" not in text, "use support.tools.require_executable"
    assert not re.search(r"skipif\([^)]*which", text), "use support.tools.require_executable"
