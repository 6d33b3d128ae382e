"""What has been processed: one set of queries, several renderers.

JSON and CSV are rendered here, the terminal table in :mod:`.table`, the HTML page in
:mod:`.html`. Reads only, in a read-only transaction, so it never blocks the daemon.
The summary and the statistics are SQL aggregates over every matching input; only the
items are limited.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from cervixbatch.outputs.spreadsheet import SafeCsvWriter
from cervixbatch.report.filters import ReportFilter
from cervixbatch.report.stats import (
    DEFAULT_LESION_THRESHOLD,
    ReportStats,
    compute_stats,
    iso,
)
from cervixbatch.store.runs import any_rerun, latest_run_only
from cervixbatch.store.schema import Input, Result, Status

__all__ = [
    "CSV_COLUMNS",
    "ReportData",
    "collect",
    "display_path",
    "item_dict",
    "render_csv",
    "render_json",
    "result_dict",
]


@dataclasses.dataclass(slots=True)
class ReportData:
    """The summary and statistics over every matching input; the items, newest first."""

    summary: dict[str, int]
    items: list[Input]
    inbox: Path | None = None
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    stats: ReportStats = dataclasses.field(default_factory=ReportStats)
    report_filter: ReportFilter = dataclasses.field(default_factory=ReportFilter)
    # sha256 → "format: architecture" of the models configured now (report.models_named)
    model_names: dict[str, str] = dataclasses.field(default_factory=dict)
    # per stage, the precision the configuration gives the models on this machine now and
    # why (model.runtime.auto_choices): the results' precision says what made them
    precision_now: dict[str, str] = dataclasses.field(default_factory=dict)


def collect(
    session: Session,
    report_filter: ReportFilter,
    *,
    inbox: Path | None = None,
    lesion_threshold: float = DEFAULT_LESION_THRESHOLD,
) -> ReportData:
    """Run the report's queries: counts by status and reason, the statistics, the items."""
    shown = report_filter
    if not report_filter.all_versions and not any_rerun(session):
        # nothing was ever reprocessed: every result is its input's latest, and the
        # latest-run condition (a correlated subquery per row) can be left out
        shown = dataclasses.replace(report_filter, all_versions=True)
    summary = {"total": 0, **{status.value: 0 for status in Status}}
    counts = report_filter.apply(select(Input.status, func.count()).group_by(Input.status))
    for status, count in session.execute(counts):
        summary[Status(status).value] = int(count)
        summary["total"] += int(count)
    reason_rows = session.execute(
        report_filter.apply(
            select(Input.status, Input.reason, func.count())
            .where(Input.status.in_([Status.REJECTED, Status.FAILED]))
            .group_by(Input.status, Input.reason)
            .order_by(func.count().desc(), Input.reason)
        )
    ).all()
    reasons: dict[str, int] = {}
    for _status, reason, count in reason_rows:
        reasons[str(reason)] = reasons.get(str(reason), 0) + int(count)
    stats = compute_stats(session, shown, lesion_threshold)
    stats = dataclasses.replace(
        stats, reasons=tuple((Status(s).value, str(r), int(c)) for s, r, c in reason_rows)
    )
    results = Input.results if shown.all_versions else Input.results.and_(latest_run_only())
    items_query = report_filter.apply(
        select(Input)
        .options(selectinload(results), selectinload(Input.sightings))
        .order_by(Input.created_at.desc(), Input.id.desc())
    )
    if report_filter.limit is not None:
        items_query = items_query.limit(report_filter.limit)
    items = list(session.scalars(items_query))
    return ReportData(
        summary=summary,
        items=items,
        inbox=inbox,
        reasons=reasons,
        stats=stats,
        report_filter=report_filter,
    )


def display_path(path: str, inbox: Path | None) -> str:
    """Return the input's path relative to the inbox when it lies there, else as recorded."""
    if inbox is not None:
        try:
            return str(Path(path).relative_to(inbox))
        except ValueError:
            pass
    return path


def result_dict(result: Result) -> dict[str, Any]:
    """Return one frame's result as the contract's JSON."""
    out: dict[str, Any] = {
        "frame": result.frame,
        "run": result.run,
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
        "runtime": result.runtime,
        "precision": result.precision,
        "created_at": iso(result.created_at),
        "outputs_purged_at": iso(result.outputs_purged_at),
    }
    if result.dicom_seg_path or result.dicom_sc_path:
        out["outputs"]["dicom_seg"] = result.dicom_seg_path
        out["outputs"]["dicom_sc"] = result.dicom_sc_path
        out["outputs"]["dicom_sr"] = result.dicom_sr_path
        out["outputs"]["sr"] = result.dicom_sr_path  # the contract's name for it
        out["dicom"] = {
            "seg_sop_instance_uid": result.dicom_seg_uid,
            "sc_sop_instance_uid": result.dicom_sc_uid,
            "sr_sop_instance_uid": result.dicom_sr_uid,
            "forward_status": result.forward_status,
            "forward_detail": result.forward_detail,
            "stow_status": result.stow_status,
            "stow_detail": result.stow_detail,
            "stow_http_status": result.stow_http_status,
        }
    if result.dicom_skipped:
        # A DICOM input whose SEG/SC could not be built: the masks are the result.
        out["dicom_skipped"] = {
            "reason": result.dicom_skipped,
            "detail": result.dicom_skipped_detail,
        }
    return out


def item_dict(item: Input, inbox: Path | None) -> dict[str, Any]:
    """Return one input as the contract's JSON (a few extra fields after the contract's)."""
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
        "created_at": iso(item.created_at),
        "finished_at": iso(item.finished_at),
        "processing_ms": round(item.processing_ms, 1) if item.processing_ms is not None else None,
        "study_uid": item.study_uid,
        "series_uid": item.series_uid,
        "sop_instance_uid": item.sop_instance_uid,
        "sightings": [
            {"path": display_path(s.path, inbox), "seen_at": iso(s.seen_at)} for s in item.sightings
        ],
    }


def render_json(data: ReportData) -> str:
    """Render the report as one JSON object (CONTRACT.md), plus the statistics as ``stats``."""
    document = {
        "summary": data.summary,
        "items": [item_dict(item, data.inbox) for item in data.items],
        "stats": data.stats.as_dict(),
    }
    if data.precision_now:  # per stage, the precision models.precision gives now, and why
        document["precision_now"] = data.precision_now
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "path",
    "sha256",
    "status",
    "reason",
    "detail",
    "created_at",
    "finished_at",
    "kind",
    "format",
    "size_bytes",
    "attempts",
    "processing_ms",
    "frame_count",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "run",
    "frame",
    "width",
    "height",
    "cervix_found",
    "cervix_fraction",
    "lesion_fraction",
    "box_x0",
    "box_y0",
    "box_x1",
    "box_y1",
    "stage1_ms",
    "stage2_ms",
    "cervix_mask",
    "lesion_mask",
    "overlay",
    "crop",
    "cervix_model",
    "lesion_model",
    "runtime",
    "precision",
)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def render_csv(data: ReportData) -> str:
    """Render one CSV row per frame (one for an input without results): every measure, path.

    Text a spreadsheet would run as a formula (a file named ``=HYPERLINK(...)``) is
    neutralised: see :func:`cervixbatch.outputs.spreadsheet.safe_cell`.
    """
    buffer = io.StringIO()
    writer = SafeCsvWriter(csv.writer(buffer, lineterminator="\n"))
    writer.writerow(CSV_COLUMNS)
    for item in data.items:
        base = [
            item.id,
            display_path(item.path, data.inbox),
            item.sha256,
            Status(item.status).value,
            _text(item.reason),
            _text(item.detail),
            _text(iso(item.created_at)),
            _text(iso(item.finished_at)),
            _text(item.kind),
            _text(item.format),
            item.size_bytes,
            item.attempts,
            f"{item.processing_ms:.1f}" if item.processing_ms is not None else "",
            _text(item.frame_count),
            _text(item.study_uid),
            _text(item.series_uid),
            _text(item.sop_instance_uid),
        ]
        if not item.results:
            writer.writerow(base + [""] * (len(CSV_COLUMNS) - len(base)))
        for r in item.results:
            writer.writerow(
                [
                    *base,
                    r.run,
                    r.frame,
                    r.width,
                    r.height,
                    int(r.cervix_found),
                    f"{r.cervix_fraction:.6f}",
                    f"{r.lesion_fraction:.6f}",
                    _text(r.box_x0),
                    _text(r.box_y0),
                    _text(r.box_x1),
                    _text(r.box_y1),
                    f"{r.stage1_ms:.1f}",
                    f"{r.stage2_ms:.1f}",
                    r.cervix_mask_path,
                    r.lesion_mask_path,
                    r.overlay_path,
                    _text(r.crop_path),
                    r.cervix_model,
                    r.lesion_model,
                    r.runtime,
                    r.precision,
                ]
            )
    return buffer.getvalue()
