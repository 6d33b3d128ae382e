"""Hashing bytes as they are read, a chunk at a time: bounded memory for a file of any
size. The inputs' identity (``intake.discovery``) and the models' versions
(``model.loading``) are both this one loop."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

__all__ = ["CHUNK", "feed_sha256"]

CHUNK = 1 << 20


def feed_sha256(
    digest: hashlib._Hash, read: Callable[[int], bytes], *, limit: int | None = None
) -> int:
    """Feeds ``read(n)``'s chunks to ``digest`` until the end, or until ``limit`` bytes
    were fed; returns how many bytes were fed."""
    total = 0
    while chunk := read(CHUNK if limit is None else min(CHUNK, limit - total)):
        digest.update(chunk)
        total += len(chunk)
        if limit is not None and total >= limit:
            break
    return total
