"""The queue's rows, made the way the worker makes them."""

from __future__ import annotations

from cervixbatch.store import queue
from cervixbatch.store.db import Database


def register(db: Database, sha: str, path: str = "/in/a.jpg", mtime: int = 1) -> queue.Registration:
    with db.session() as session:
        return queue.register(
            session, sha256=sha * 64 if len(sha) == 1 else sha, path=path, size=10, mtime_ns=mtime
        )
