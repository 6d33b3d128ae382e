"""Send the DICOM outputs (SEG, overlay SC) to a PACS or viewer by C-STORE, with retries.

:func:`forward` never raises for network trouble: it returns a :class:`ForwardResult` that
says what was sent and, if not everything, why — the caller records it and moves on (the
outputs stay in the outbox and can be sent again). Each attempt opens one association,
sends what is still unsent and releases it; a failed attempt is followed by a wait of
``backoff x 2**(n-1)`` seconds before attempt ``n + 1``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pydicom
import structlog
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from cervixbatch.config import DicomPeer

__all__ = ["ForwardResult", "forward"]

log = structlog.get_logger("cervixbatch.delivery.dicom_forward")

# Success, and the warnings of PS3.4 B.2.3: the peer stored the instance.
_STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardResult:
    """What :func:`forward` achieved."""

    ok: bool  # every path was stored by the peer
    sent: tuple[Path, ...]
    failed: tuple[Path, ...]
    attempts: int  # associations tried (0 when nothing could be tried)
    reason: str | None  # None when ok; else a short sentence without patient data


def forward(
    paths: Sequence[Path],
    destination: DicomPeer,
    calling_ae: str,
    retries: int = 3,
    backoff: float = 2.0,
    *,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ForwardResult:
    """C-STORE every file of ``paths`` to ``destination``.

    Args:
        paths: DICOM files (the SEG and SC written by :mod:`cervixbatch.outputs.dicom`).
        destination: The peer (``[dicom] forward``, parsed when the settings were loaded).
        calling_ae: Our AE title (``[dicom] ae_title``).
        retries: Further attempts after the first one fails.
        backoff: Seconds before the first retry; doubled for each later one.
        timeout: Seconds for connecting, association negotiation and each response.
        sleep: Waits between attempts (tests pass a no-op).

    """
    peer = _Peer(*destination, calling_ae=calling_ae, timeout=timeout)
    datasets: dict[Path, Dataset] = {}
    for path in paths:
        try:
            datasets[path] = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - unreadable output: nothing to retry
            return _failed((), paths, 0, f"cannot read {path.name} ({type(exc).__name__})")

    pending = list(paths)
    sent: list[Path] = []
    reason = ""
    attempts = 0
    for attempt in range(1, max(0, retries) + 2):
        if attempt > 1:
            sleep(backoff * 2 ** (attempt - 2))
        attempts = attempt
        stored, reason = _attempt(peer, [(p, datasets[p]) for p in pending])
        sent.extend(stored)
        pending = [p for p in pending if p not in stored]
        if not pending:
            log.info("dicom_forwarded", destination=str(peer), files=len(sent), attempts=attempt)
            return ForwardResult(
                ok=True, sent=tuple(sent), failed=(), attempts=attempts, reason=None
            )
        log.warning(
            "dicom_forward_attempt_failed",
            destination=str(peer),
            attempt=attempt,
            pending=len(pending),
            reason=reason,
        )
    return _failed(sent, pending, attempts, reason)


@dataclasses.dataclass(frozen=True, slots=True)
class _Peer:
    called_ae: str
    host: str
    port: int
    calling_ae: str
    timeout: float

    def __str__(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"


def _failed(
    sent: Sequence[Path], failed: Sequence[Path], attempts: int, reason: str
) -> ForwardResult:
    return ForwardResult(
        ok=False, sent=tuple(sent), failed=tuple(failed), attempts=attempts, reason=reason
    )


def _attempt(peer: _Peer, items: list[tuple[Path, Dataset]]) -> tuple[list[Path], str]:
    """One association: returns the paths stored and, if any were not, why."""
    ae = AE(ae_title=peer.calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = peer.timeout
    ae.network_timeout = peer.timeout
    contexts: dict[str, list[str]] = {}
    for _, ds in items:
        # The file's own syntax first, then the two a Storage SCP must accept (PS3.4 B.4.1).
        offered = contexts.setdefault(str(ds.SOPClassUID), [])
        for syntax in (
            ds.file_meta.TransferSyntaxUID,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        ):
            if str(syntax) not in offered:
                offered.append(str(syntax))
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, syntaxes)
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_ae)
    except Exception as exc:  # noqa: BLE001 - a network error is a result, not an exception
        ae.shutdown()
        return [], f"cannot connect to {peer} ({type(exc).__name__})"
    if not assoc.is_established:
        ae.shutdown()
        if assoc.is_rejected:
            return [], f"association rejected by {peer}"
        # pynetdicom does not say which: no connection, or no presentation context accepted.
        return [], f"no association with {peer} (unreachable, or no presentation context accepted)"
    try:
        return _send_all(assoc, peer, items)
    except Exception as exc:  # noqa: BLE001 - keep the promise: never raise for the network
        return [], f"sending to {peer} failed ({type(exc).__name__})"
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _send_all(
    assoc: Association, peer: _Peer, items: list[tuple[Path, Dataset]]
) -> tuple[list[Path], str]:
    stored: list[Path] = []
    reason = ""
    for path, ds in items:
        try:
            status = assoc.send_c_store(ds)
        except ValueError:  # no accepted presentation context for this SOP class/syntax
            reason = f"{peer.called_ae} accepts no presentation context for {path.name}"
            continue
        code = int(status.get("Status", -1)) if status else -1
        if code in _STORED:
            stored.append(path)
            log.debug("dicom_forward_stored")  # no UID in a log, not even our own
        elif code == -1:
            return stored, f"no response from {peer} (timeout or connection lost)"
        else:
            reason = f"{peer.called_ae} answered status 0x{code:04X} for {path.name}"
    return stored, reason
