"""Test-only: a stand-in for an input that kills its worker.

A decoder that segfaults on one file, or a file that makes the kernel's OOM killer take
the process, cannot be summoned on demand in a test. With the environment variable
``CERVIXBATCH_TEST_CRASH_ON_SHA256`` set to an input's sha256, the worker that starts
reading that input dies at once by SIGKILL, exactly as it would from such a crash: no
handler runs, no row is written, its lease is left to run out. Unset (always, outside
the test suite), the check is one comparison with None. Read once, at import.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ON_SHA256", "crash_if_poison"]

CRASH_ON_SHA256 = "CERVIXBATCH_TEST_CRASH_ON_SHA256"
_POISON = os.environ.get(CRASH_ON_SHA256) or None


def crash_if_poison(sha256: str) -> None:
    """Kills this process (SIGKILL) when ``sha256`` is the test's poison input."""
    if _POISON is not None and sha256 == _POISON:
        os.kill(os.getpid(), signal.SIGKILL)
