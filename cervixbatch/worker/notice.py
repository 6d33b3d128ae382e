"""The webhook's notice of one finished input, built from the worker's item at commit.

The body names the input by id and sha256, its status and reason, the fractions per
frame, the model pair and the output file names relative to the input's output folder;
never a path or patient data, unless ``include_patient = true``. Sending and signing are
:mod:`cervixbatch.delivery.webhook`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cervixbatch.config import WebhookConfig
from cervixbatch.store.schema import Status
from cervixbatch.worker.batch_state import WorkItem

__all__ = ["notice_body"]

_OUTPUT_FIELDS = (
    "cervix_mask", "lesion_mask", "overlay", "crop", "dicom_seg", "dicom_sc", "dicom_sr"
)  # fmt: skip


def notice_body(item: WorkItem, models: dict[str, str], settings: WebhookConfig) -> str:
    """The JSON notice of one finished input (keys sorted, so the bytes are stable)."""
    if item.completed:
        status, reason = Status.DONE.value, None
    else:
        status = (item.ended or Status.FAILED).value
        reason = item.rejection.reason.value if item.rejection else None
        if reason is None and item.failure is not None:
            reason = str(item.failure[0])
    notice: dict[str, Any] = {
        "event": "input_finished",
        "input_id": item.claimed.id,
        "sha256": item.claimed.sha256,
        "run": item.run,
        "status": status,
        "reason": reason,
        "models": models,
        "frames": [],
    }
    if item.completed:
        root = item.stage.target
        for index, (result, outputs) in enumerate(zip(item.results, item.outputs, strict=True)):
            names = [
                _relative(path, root)
                for field in _OUTPUT_FIELDS
                if (path := getattr(outputs, field)) is not None
            ]
            notice["frames"].append(
                {
                    "frame": index,
                    "cervix_found": bool(result.cervix_found),
                    "cervix_fraction": round(float(result.cervix_fraction), 6),
                    "lesion_fraction": round(float(result.lesion_fraction), 6),
                    "outputs": names,
                }
            )
    if settings.include_patient:
        notice["path"] = item.path
        notice["patient"] = _patient(item)
    return json.dumps(notice, sort_keys=True, separators=(",", ":"))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _patient(item: WorkItem) -> dict[str, str] | None:
    header = item.decoded.dicom_header if item.decoded is not None else None
    if header is None:
        return None
    keywords = ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber", "StudyDate")
    return {k: str(header.get(k)) for k in keywords if header.get(k) not in (None, "")}
