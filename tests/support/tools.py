"""Outside tools: a missing one skips a test on a user's machine and fails it in CI."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

# CI promises every tool the suite uses (.ci/run installs them): there, a missing tool is
# a broken build, not a reason to skip.
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tool_missing(reason: str) -> NoReturn:
    """Skips the test on a user's machine, saying why; fails it in CI (``CI=true``)."""
    if IN_CI:
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


def require_executable(*names: str, install: str) -> str:
    """The path of the first of ``names`` on PATH; otherwise :func:`tool_missing`."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    tool_missing(f"{names[0]} is not installed ({install})")
