"""Starts cervixbatchd on a slow disk: each ``os.fsync`` first waits
``CERVIXBATCH_TEST_FSYNC_DELAY`` seconds, as on an NFS outbox or a failing USB stick.

Only the daemon's own writes (outputs, archive, SCP files) are slowed: SQLite syncs in C.
Usage: ``python tests/support/slow_disk.py --config FILE [args of cervixbatchd]``.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

_DELAY = float(os.environ["CERVIXBATCH_TEST_FSYNC_DELAY"])
_fsync = os.fsync


def _slow_fsync(fd: int) -> None:
    time.sleep(_DELAY)
    _fsync(fd)


os.fsync = _slow_fsync
sys.argv[0] = "cervixbatchd"
runpy.run_module("cervixbatchd", run_name="__main__", alter_sys=True)
