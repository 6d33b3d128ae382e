"""Sending DICOM results to a PACS: off the batch path, with its state recorded."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
from sqlalchemy import select, update

from cervixbatch.config import Config
from cervixbatch.store.db import Database
from cervixbatch.store.schema import ForwardStatus, Result

__all__ = ["Forwarder"]

log = structlog.get_logger(__name__)


class Forwarder:
    """C-STOREs each done input's SEG and SC to ``[dicom] forward`` in one background
    thread; the result rows say pending, sent or failed."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        # Retries and time-outs against a PACS must never hold up a batch.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cervixbatch-forward")

    def submit(self, input_id: int, paths: Sequence[Path]) -> None:
        """Queues one input's DICOM results for sending."""
        self._pool.submit(self._send, input_id, list(paths))

    def submit_pending(self) -> int:
        """Queues the results a stop left "pending"; returns how many inputs."""
        pending: dict[int, list[Path]] = {}
        with self.db.read_session() as session:
            rows = session.execute(
                select(Result.input_id, Result.dicom_seg_path, Result.dicom_sc_path).where(
                    Result.forward_status == ForwardStatus.PENDING
                )
            )
            for input_id, seg, sc in rows:
                pending.setdefault(int(input_id), []).extend(Path(p) for p in (seg, sc) if p)
        for input_id, paths in pending.items():
            self.submit(input_id, paths)
        return len(pending)

    def close(self) -> None:
        """Finishes the send in hand; what has not started stays pending for the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _send(self, input_id: int, paths: list[Path]) -> None:
        from cervixbatch.delivery.dicom_forward import forward

        dicom = self.config.dicom
        peer = dicom.forward_peer
        if peer is None:  # pragma: no cover - a Forwarder exists only when forward is set
            return
        result = forward(
            paths,
            peer,
            dicom.ae_title,
            dicom.forward_retries,
            dicom.forward_backoff_seconds,
        )
        status = ForwardStatus.SENT if result.ok else ForwardStatus.FAILED
        try:
            with self.db.session() as session:
                session.execute(
                    update(Result)
                    .where(Result.input_id == input_id, Result.forward_status.is_not(None))
                    .values(forward_status=status, forward_detail=result.reason)
                )
        except Exception as exc:  # noqa: BLE001 - stays "pending": sent again after a restart
            log.warning("forward_state_not_saved", input_id=input_id, error=type(exc).__name__)
        log.info(
            "input_forwarded" if result.ok else "input_forward_failed",
            input_id=input_id,
            files=len(paths),
            attempts=result.attempts,
            reason=result.reason,
        )
