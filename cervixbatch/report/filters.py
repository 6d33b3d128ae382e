"""Which inputs a report covers: the one filter every report query applies."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import Select

from cervixbatch.store.runs import latest_run_only
from cervixbatch.store.schema import Input, Status

__all__ = ["ReportFilter"]

_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")


@dataclasses.dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which inputs a report covers. Dates bound ``created_at`` (when first found)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    statuses: tuple[Status, ...] = ()
    reasons: tuple[str, ...] = ()
    limit: int | None = None
    all_versions: bool = False  # every run's results, not only each input's latest

    def apply_results(self, query: _Query) -> _Query:
        """Add this filter's condition on :class:`Result` rows: the latest run only,
        unless ``all_versions``."""
        return query if self.all_versions else query.where(latest_run_only())

    def apply(self, query: _Query) -> _Query:
        """Add the WHERE clauses of this filter to ``query``."""
        if self.since is not None:
            query = query.where(Input.created_at >= self.since)
        if self.until is not None:
            query = query.where(Input.created_at < self.until)
        if self.statuses:
            query = query.where(Input.status.in_(self.statuses))
        if self.reasons:
            query = query.where(Input.reason.in_(self.reasons))
        return query
