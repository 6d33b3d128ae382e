"""Store the DICOM outputs (SEG, overlay SC) in a PACS or archive by DICOMweb STOW-RS.

:func:`stow` POSTs the files to ``<[dicomweb] stow_url>/studies`` with ``dicomweb-client``
(the ``dicomweb`` extra) through :func:`cervixbatch.delivery.http_session.dicomweb_session`
(credentials from a file, TLS verified). Like :func:`cervixbatch.delivery.dicom_forward.forward`
it never raises for the network: it returns a :class:`StowResult`. A connection error, a
time-out or a 5xx (or 408, 429) answer is retried ``retries`` times, waiting
``backoff x 2**(n-1)`` seconds before retry ``n``; any other 4xx is final at once — the
same request would get the same answer — and its status code is kept in the result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import requests
import structlog
from pydicom.dataset import Dataset

from cervixbatch.config import DicomWebConfig
from cervixbatch.delivery.http_session import dicomweb_session
from cervixbatch.errors import CervixbatchError

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient

__all__ = ["StowResult", "stow"]

log = structlog.get_logger("cervixbatch.delivery.stow")

# 4xx answers that say "later", not "never".
_TRANSIENT_4XX = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})


@dataclasses.dataclass(frozen=True, slots=True)
class StowResult:
    """What :func:`stow` achieved."""

    ok: bool  # the server stored every file
    attempts: int  # requests tried (0 when nothing could be tried)
    reason: str | None  # None when ok; else a short sentence without patient data
    http_status: int | None  # the HTTP error status the server answered (4xx, 5xx), if any
    final: bool = False  # a 4xx (or refused instances): sending again would not help


def stow(
    paths: Sequence[Path],
    settings: DicomWebConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> StowResult:
    """STOW-RS every file of ``paths`` to ``settings.stow_url`` in one request per attempt."""
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        reason = "dicomweb-client is not installed (pip install 'cervixbatch[dicomweb]')"
        return StowResult(ok=False, attempts=0, reason=reason, http_status=None, final=True)
    datasets: list[Dataset] = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:  # noqa: BLE001 - unreadable output: nothing to retry
            reason = f"cannot read {path.name} ({type(exc).__name__})"
            return StowResult(ok=False, attempts=0, reason=reason, http_status=None, final=True)
    try:
        session = dicomweb_session(settings)
    except CervixbatchError as exc:  # the credentials file: final until someone fixes it
        return StowResult(ok=False, attempts=0, reason=str(exc), http_status=None, final=True)
    client = DICOMwebClient(settings.stow_url, session=session, timeout=settings.timeout_seconds)
    client.set_http_retry_params(retry=False)  # the retries and their waits are ours

    result = StowResult(ok=False, attempts=0, reason="not tried", http_status=None)
    try:
        for attempt in range(1, max(0, settings.retries) + 2):
            if attempt > 1:
                sleep(settings.backoff_seconds * 2 ** (attempt - 2))
            result = _attempt(client, datasets, attempt)
            if result.ok or result.final:
                break
            log.warning(
                "dicomweb_stow_attempt_failed",
                attempt=attempt,
                status=result.http_status,
                reason=result.reason,
            )
    finally:
        session.close()
    event = "dicomweb_stored" if result.ok else "dicomweb_stow_failed"
    log.info(event, files=len(datasets), attempts=result.attempts, status=result.http_status)
    return result


def _attempt(client: DICOMwebClient, datasets: list[Dataset], attempt: int) -> StowResult:
    """One STOW-RS request."""
    try:
        answer = client.store_instances(datasets)
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        final = code is not None and 400 <= code < 500 and code not in _TRANSIENT_4XX
        phrase = _phrase(code)
        return StowResult(
            ok=False,
            attempts=attempt,
            reason=f"the DICOMweb server answered {code}{phrase}",
            http_status=code,
            final=final,
        )
    except requests.RequestException as exc:
        reason = f"cannot reach the DICOMweb server ({type(exc).__name__})"
        return StowResult(ok=False, attempts=attempt, reason=reason, http_status=None)
    except Exception as exc:  # noqa: BLE001 - an answer dicomweb-client cannot parse
        reason = f"the DICOMweb server's answer cannot be read ({type(exc).__name__})"
        return StowResult(ok=False, attempts=attempt, reason=reason, http_status=None)
    refused = list(getattr(answer, "FailedSOPSequence", []) or [])
    if refused:
        codes = sorted({f"0x{int(item.get('FailureReason', 0)):04X}" for item in refused})
        reason = f"the DICOMweb server refused {len(refused)} instance(s) ({', '.join(codes)})"
        return StowResult(ok=False, attempts=attempt, reason=reason, http_status=None, final=True)
    return StowResult(ok=True, attempts=attempt, reason=None, http_status=None)


def _phrase(code: int | None) -> str:
    try:
        return f" ({HTTPStatus(code).phrase})" if code is not None else ""
    except ValueError:
        return ""
