"""The report's statistics: SQL aggregates over every input that matches the filters.

Lesion-positive share, processing times (median by ORDER BY/OFFSET, which SQLite and
PostgreSQL both run), throughput between the first and the last finish, and the model
versions in use. Only ``collect`` in :mod:`cervixbatch.report.query` calls them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select

from cervixbatch.config import ReportConfig
from cervixbatch.store.schema import Input, Result, Status

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cervixbatch.report.filters import ReportFilter

__all__ = ["DEFAULT_LESION_THRESHOLD", "ModelUse", "ReportStats", "compute_stats", "iso"]

DEFAULT_LESION_THRESHOLD = ReportConfig().lesion_positive_threshold  # [report]'s default


def iso(value: dt.datetime | None) -> str | None:
    """Return ISO 8601 text, or None."""
    return value.isoformat() if value is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class ModelUse:
    """One pair of model versions (sha256 of each file) and how many frames it segmented."""

    cervix: str
    lesion: str
    precision: str
    frames: int
    last_used: dt.datetime | None
    runtime: str = "tensorflow"


@dataclasses.dataclass(frozen=True, slots=True)
class ReportStats:
    """Aggregates over every matching input (not only the listed items)."""

    lesion_threshold: float = DEFAULT_LESION_THRESHOLD
    frames: int = 0
    frames_with_cervix: int = 0
    lesion_positive: int = 0  # frames with a cervix whose lesion_fraction > threshold
    timed: int = 0  # done inputs with a processing time
    median_ms: float | None = None
    slowest_ms: float | None = None
    slowest_id: int | None = None
    slowest_path: str | None = None
    finished: int = 0  # inputs in a terminal state with a finish time
    first_finished: dt.datetime | None = None
    last_finished: dt.datetime | None = None
    models: tuple[ModelUse, ...] = ()
    reasons: tuple[tuple[str, str, int], ...] = ()  # (status, reason, count)

    @property
    def lesion_positive_share(self) -> float | None:
        """Lesion-positive frames over frames with a cervix; None when there are none."""
        return self.lesion_positive / self.frames_with_cervix if self.frames_with_cervix else None

    @property
    def span_seconds(self) -> float:
        """Seconds between the first and the last finish."""
        if self.first_finished is None or self.last_finished is None:
            return 0.0
        return (self.last_finished - self.first_finished).total_seconds()

    @property
    def per_hour(self) -> float | None:
        """Inputs finished per hour over the span; None when the span is under a minute."""
        span = self.span_seconds
        return self.finished / span * 3600.0 if span >= 60.0 else None

    def as_dict(self) -> dict[str, Any]:
        """Return the statistics as plain JSON values."""
        return {
            "lesion_threshold": self.lesion_threshold,
            "frames": self.frames,
            "frames_with_cervix": self.frames_with_cervix,
            "lesion_positive": self.lesion_positive,
            "lesion_positive_share": _round(self.lesion_positive_share, 4),
            "processing_ms": {
                "count": self.timed,
                "median": _round(self.median_ms, 1),
                "slowest": _round(self.slowest_ms, 1),
                "slowest_id": self.slowest_id,
            },
            "throughput": {
                "finished": self.finished,
                "first_finished": iso(self.first_finished),
                "last_finished": iso(self.last_finished),
                "per_hour": _round(self.per_hour, 4),
            },
            "models": [
                {
                    "cervix": m.cervix,
                    "lesion": m.lesion,
                    "runtime": m.runtime,
                    "precision": m.precision,
                    "frames": m.frames,
                    "last_used": iso(m.last_used),
                }
                for m in self.models
            ],
            "reasons": [{"status": s, "reason": r, "count": c} for s, r, c in self.reasons],
        }


def compute_stats(session: Session, report_filter: ReportFilter, threshold: float) -> ReportStats:
    """Compute lesion-positive share, processing times, throughput and models, in SQL."""
    with_cervix = Result.cervix_found.is_(True)
    positive = with_cervix & (Result.lesion_fraction > threshold)
    frames, found, lesion_positive = session.execute(
        report_filter.apply_results(
            report_filter.apply(
                select(
                    func.count(Result.id),
                    func.coalesce(func.sum(case((with_cervix, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((positive, 1), else_=0)), 0),
                )
                .select_from(Result)
                .join(Input, Result.input_id == Input.id)
            )
        )
    ).one()

    done = report_filter.apply(
        select(Input.processing_ms).where(
            Input.status == Status.DONE, Input.processing_ms.is_not(None)
        )
    )
    timed = int(session.scalar(select(func.count()).select_from(done.subquery())) or 0)
    median = slowest = None
    slowest_id = slowest_path = None
    if timed:
        ordered = done.order_by(Input.processing_ms)
        middle = [
            float(v or 0.0)
            for v in session.scalars(ordered.offset((timed - 1) // 2).limit(2 - timed % 2))
        ]
        median = sum(middle) / len(middle)
        row = session.execute(
            done.with_only_columns(Input.id, Input.path, Input.processing_ms)
            .order_by(Input.processing_ms.desc())
            .limit(1)
        ).one()
        slowest_id, slowest_path, slowest = int(row[0]), str(row[1]), float(row[2] or 0.0)

    finished, first, last = session.execute(
        report_filter.apply(
            select(
                func.count(Input.finished_at),
                func.min(Input.finished_at),
                func.max(Input.finished_at),
            ).where(Input.status.in_([s for s in Status if s.terminal]))
        )
    ).one()

    last_used = func.max(Result.created_at)
    models = tuple(
        ModelUse(
            cervix=str(c),
            lesion=str(les),
            precision=str(p),
            frames=int(n),
            last_used=_aware(u),
            runtime=str(r),
        )
        for c, les, r, p, n, u in session.execute(
            report_filter.apply_results(
                report_filter.apply(
                    select(
                        Result.cervix_model,
                        Result.lesion_model,
                        Result.runtime,
                        Result.precision,
                        func.count(Result.id),
                        last_used,
                    )
                    .join(Input, Result.input_id == Input.id)
                    .group_by(
                        Result.cervix_model, Result.lesion_model, Result.runtime, Result.precision
                    )
                    .order_by(last_used.desc())
                )
            )
        )
    )
    return ReportStats(
        lesion_threshold=threshold,
        frames=int(frames),
        frames_with_cervix=int(found),
        lesion_positive=int(lesion_positive),
        timed=timed,
        median_ms=median,
        slowest_ms=slowest,
        slowest_id=slowest_id,
        slowest_path=slowest_path,
        finished=int(finished),
        first_finished=_aware(first),
        last_finished=_aware(last),
        models=models,
    )


def _aware(value: Any) -> dt.datetime | None:
    """Make an aggregate's value aware: SQLite hands back naive UTC text or datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None
