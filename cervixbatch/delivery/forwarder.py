"""Sending DICOM results to a PACS, and notices to a webhook: off the batch path, with
their state recorded.

Two independent legs, each with its own state on the result rows: C-STORE to
``[dicom] forward`` (``forward_status``, ``forward_detail``) and STOW-RS to
``[dicomweb] stow_url`` (``stow_status``, ``stow_detail``, ``stow_http_status``). A row
is "pending" from the commit that wrote it until its leg ends "sent" or "failed"; what a
stop left pending is sent again at the next start. The webhook notices the commits store
are sent by a :class:`~cervixbatch.delivery.webhook.WebhookSender` this owns.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import or_, select, update

from cervixbatch.config import Config
from cervixbatch.delivery.webhook import WebhookSender
from cervixbatch.store.db import Database
from cervixbatch.store.schema import ForwardStatus, Result

__all__ = ["Forwarder", "Leg"]

log = structlog.get_logger(__name__)


class Leg(enum.StrEnum):
    """Where results go."""

    CSTORE = "cstore"  # [dicom] forward
    STOW = "stow"  # [dicomweb] stow_url


class Forwarder:
    """Sends each done input's DICOM results on every configured leg in one background
    thread; the result rows say pending, sent or failed, per leg."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.legs = tuple(
            leg
            for leg, wanted in (
                (Leg.CSTORE, bool(config.dicom.forward)),
                (Leg.STOW, bool(config.dicomweb.stow_url)),
            )
            if wanted
        )
        # Retries and time-outs against a PACS must never hold up a batch.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cervixbatch-forward")
        self._webhook: WebhookSender | None = None
        if config.webhook.url:
            self._webhook = WebhookSender(config.webhook, db)
            self._webhook.start()

    def submit(
        self, input_id: int, paths: Sequence[Path], legs: Sequence[Leg] | None = None
    ) -> None:
        """Queues one input's DICOM results for sending (on every leg, by default)."""
        for leg in self.legs if legs is None else legs:
            self._pool.submit(self._send, leg, input_id, list(paths))

    def submit_pending(self) -> int:
        """Queues the results a stop left "pending"; returns how many inputs."""
        pending: dict[tuple[int, Leg], list[Path]] = {}
        pending_value = ForwardStatus.PENDING.value
        with self.db.read_session() as session:
            rows = session.execute(
                select(
                    Result.input_id,
                    Result.dicom_seg_path,
                    Result.dicom_sc_path,
                    Result.dicom_sr_path,
                    Result.forward_status,
                    Result.stow_status,
                ).where(
                    or_(
                        Result.forward_status == ForwardStatus.PENDING,
                        Result.stow_status == ForwardStatus.PENDING,
                    )
                )
            )
            for input_id, seg, sc, sr, forward_status, stow_status in rows:
                files = [Path(p) for p in (seg, sc, sr) if p]
                for leg, status in ((Leg.CSTORE, forward_status), (Leg.STOW, stow_status)):
                    if status == pending_value and leg in self.legs:
                        pending.setdefault((int(input_id), leg), []).extend(files)
        for (input_id, leg), paths in pending.items():
            self.submit(input_id, paths, [leg])
        return len({input_id for input_id, _ in pending})

    def close(self) -> None:
        """Finishes the send in hand; what has not started stays pending for the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._webhook is not None:
            self._webhook.close()

    def _send(self, leg: Leg, input_id: int, paths: list[Path]) -> None:
        if leg is Leg.STOW:
            ok, values, fields = self._stow(paths)
            column = Result.stow_status
        else:
            ok, values, fields = self._cstore(paths)
            column = Result.forward_status
        try:
            with self.db.session() as session:
                session.execute(
                    update(Result)
                    .where(Result.input_id == input_id, column.is_not(None))
                    .values(**values)
                )
        except Exception as exc:  # noqa: BLE001 - stays "pending": sent again after a restart
            log.warning(
                "forward_state_not_saved", input_id=input_id, leg=leg, error=type(exc).__name__
            )
        log.info(
            "input_forwarded" if ok else "input_forward_failed",
            input_id=input_id,
            leg=leg.value,
            files=len(paths),
            **fields,
        )

    def _cstore(self, paths: list[Path]) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        from cervixbatch.delivery.dicom_forward import forward

        dicom = self.config.dicom
        peer = dicom.forward_peer
        assert peer is not None  # the leg exists only when forward is set
        result = forward(
            paths, peer, dicom.ae_title, dicom.forward_retries, dicom.forward_backoff_seconds
        )
        status = ForwardStatus.SENT if result.ok else ForwardStatus.FAILED
        values = {"forward_status": status, "forward_detail": result.reason}
        return result.ok, values, {"attempts": result.attempts, "reason": result.reason}

    def _stow(self, paths: list[Path]) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        from cervixbatch.delivery.stow import stow

        result = stow(paths, self.config.dicomweb)
        values = {
            "stow_status": ForwardStatus.SENT if result.ok else ForwardStatus.FAILED,
            "stow_detail": result.reason,
            "stow_http_status": result.http_status,
        }
        fields = {
            "attempts": result.attempts,
            "reason": result.reason,
            "http_status": result.http_status,
        }
        return result.ok, values, fields
