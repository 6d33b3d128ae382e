"""What has been processed: one query, several renderers (table, JSON, CSV; HTML in
``report_html``). Reads only, in a read-only transaction, so it never blocks the daemon."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from cervixbatch.store.schema import Input, Result, Status

__all__ = [
    "ReportFilter",
    "ReportData",
    "collect",
    "item_dict",
    "render_csv",
    "render_json",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which inputs a report covers. Dates bound ``created_at`` (when first found)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    statuses: tuple[Status, ...] = ()
    reasons: tuple[str, ...] = ()
    limit: int | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Adds the WHERE clauses of this filter to ``query``."""
        if self.since is not None:
            query = query.where(Input.created_at >= self.since)
        if self.until is not None:
            query = query.where(Input.created_at < self.until)
        if self.statuses:
            query = query.where(Input.status.in_(self.statuses))
        if self.reasons:
            query = query.where(Input.reason.in_(self.reasons))
        return query


@dataclasses.dataclass(slots=True)
class ReportData:
    """The summary over every matching input, and the items (newest first, limited)."""

    summary: dict[str, int]
    items: list[Input]
    inbox: Path | None = None
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)


def collect(session: Session, report_filter: ReportFilter, *, inbox: Path | None = None) -> ReportData:
    """Runs the report's queries: counts by status and reason, then the items."""
    summary = {"total": 0, **{status.value: 0 for status in Status}}
    counts = report_filter.apply(select(Input.status, func.count()).group_by(Input.status))
    for status, count in session.execute(counts):
        summary[Status(status).value] = int(count)
        summary["total"] += int(count)
    reasons: dict[str, int] = {}
    by_reason = report_filter.apply(
        select(Input.reason, func.count())
        .where(Input.status.in_([Status.REJECTED, Status.FAILED]))
        .group_by(Input.reason)
    )
    for reason, count in session.execute(by_reason):
        reasons[str(reason)] = int(count)
    items_query = report_filter.apply(
        select(Input)
        .options(selectinload(Input.results), selectinload(Input.sightings))
        .order_by(Input.created_at.desc(), Input.id.desc())
    )
    if report_filter.limit is not None:
        items_query = items_query.limit(report_filter.limit)
    items = list(session.scalars(items_query))
    return ReportData(summary=summary, items=items, inbox=inbox, reasons=reasons)


def display_path(path: str, inbox: Path | None) -> str:
    """The input's path relative to the inbox when it lies there, else as recorded."""
    if inbox is not None:
        try:
            return str(Path(path).relative_to(inbox))
        except ValueError:
            pass
    return path


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def result_dict(result: Result) -> dict[str, Any]:
    """One frame's result as the contract's JSON."""
    return {
        "frame": result.frame,
        "cervix_found": result.cervix_found,
        "cervix_fraction": round(result.cervix_fraction, 6),
        "lesion_fraction": round(result.lesion_fraction, 6),
        "width": result.width,
        "height": result.height,
        "outputs": {
            "cervix_mask": result.cervix_mask_path,
            "lesion_mask": result.lesion_mask_path,
            "overlay": result.overlay_path,
            "crop": result.crop_path,
        },
        "models": {"cervix": result.cervix_model, "lesion": result.lesion_model},
        "precision": result.precision,
    }


def item_dict(item: Input, inbox: Path | None) -> dict[str, Any]:
    """One input as the contract's JSON (with a few extra fields after the contract's)."""
    return {
        "path": display_path(item.path, inbox),
        "sha256": item.sha256,
        "status": Status(item.status).value,
        "reason": item.reason,
        "detail": item.detail,
        "results": [result_dict(r) for r in item.results],
        "id": item.id,
        "kind": item.kind,
        "format": item.format,
        "size_bytes": item.size_bytes,
        "attempts": item.attempts,
        "created_at": _iso(item.created_at),
        "finished_at": _iso(item.finished_at),
        "processing_ms": round(item.processing_ms, 1) if item.processing_ms is not None else None,
        "study_uid": item.study_uid,
        "series_uid": item.series_uid,
        "sop_instance_uid": item.sop_instance_uid,
        "sightings": [
            {"path": display_path(s.path, inbox), "seen_at": _iso(s.seen_at)} for s in item.sightings
        ],
    }


def render_json(data: ReportData) -> str:
    """The report as one JSON object (CONTRACT.md)."""
    document = {
        "summary": data.summary,
        "items": [item_dict(item, data.inbox) for item in data.items],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS: Sequence[str] = (
    "id", "path", "sha256", "status", "reason", "detail", "created_at", "finished_at",
    "frame", "width", "height", "cervix_found", "cervix_fraction", "lesion_fraction",
    "cervix_mask", "lesion_mask", "overlay", "crop", "cervix_model", "lesion_model",
)


def render_csv(data: ReportData) -> str:
    """One row per frame (one row for an input without results), every measure and path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in data.items:
        base = [
            item.id, display_path(item.path, data.inbox), item.sha256, Status(item.status).value,
            item.reason or "", item.detail or "", _iso(item.created_at) or "",
            _iso(item.finished_at) or "",
        ]
        if not item.results:
            writer.writerow(base + [""] * (len(CSV_COLUMNS) - len(base)))
        for r in item.results:
            writer.writerow([
                *base, r.frame, r.width, r.height, int(r.cervix_found),
                f"{r.cervix_fraction:.6f}", f"{r.lesion_fraction:.6f}", r.cervix_mask_path,
                r.lesion_mask_path, r.overlay_path, r.crop_path or "", r.cervix_model,
                r.lesion_model,
            ])
    return buffer.getvalue()
