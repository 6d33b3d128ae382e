"""Runs: an input is processed once per run (first found, then each `reprocess`).

Every run keeps its own result rows (and its own output files); reports show an input's
latest run unless asked for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from cervixbatch.store.schema import Input, Result

__all__ = [
    "ModelPair",
    "any_rerun",
    "latest_run_only",
    "model_pairs",
    "next_runs",
    "results_of_pairs",
]

ModelPair = tuple[str, str]  # (cervix version, lesion version)


def next_runs(session: Session, input_ids: Sequence[int]) -> dict[int, int]:
    """The run number each input's next results get: one past its latest, 1 for a first."""
    if not input_ids:
        return {}
    latest = {
        int(input_id): run
        for input_id, run in session.execute(
            select(Result.input_id, func.max(Result.run))
            .where(Result.input_id.in_(input_ids))
            .group_by(Result.input_id)
        )
    }
    return {input_id: int(latest.get(input_id) or 0) + 1 for input_id in input_ids}


def any_rerun(session: Session) -> bool:
    """True once any input has results of a second run (an index lookup)."""
    return session.scalar(select(Result.id).where(Result.run > 1).limit(1)) is not None


def latest_run_only() -> ColumnElement[bool]:
    """A condition on :class:`Result` rows: true for those of their input's latest run."""
    newer = aliased(Result)
    latest = select(func.max(newer.run)).where(newer.input_id == Result.input_id).scalar_subquery()
    return Result.run == latest


def model_pairs(session: Session) -> list[tuple[str, str, int]]:
    """Every (cervix, lesion) pair of model versions that made results, with how many
    inputs each made results for; most used first."""
    rows = session.execute(
        select(Result.cervix_model, Result.lesion_model, func.count(func.distinct(Result.input_id)))
        .group_by(Result.cervix_model, Result.lesion_model)
        .order_by(func.count(func.distinct(Result.input_id)).desc())
    )
    return [(str(c), str(les), int(n)) for c, les, n in rows]


def _made_by(entity: Any, pair: ModelPair) -> ColumnElement[bool]:
    return and_(entity.cervix_model == pair[0], entity.lesion_model == pair[1])


def results_of_pairs(
    session: Session,
    first: ModelPair,
    second: ModelPair,
    restrict: Callable[[Select[Any]], Select[Any]],
    limit: int | None = None,
) -> list[Result]:
    """The results made by either pair for inputs that have results of both, newest
    inputs first; ``restrict`` adds the report's filters on :class:`Input`."""
    a, b = aliased(Result), aliased(Result)
    ids_query = restrict(
        select(Input.id)
        .where(exists().where(a.input_id == Input.id, _made_by(a, first)))
        .where(exists().where(b.input_id == Input.id, _made_by(b, second)))
        .order_by(Input.id.desc())
    )
    if limit is not None:
        ids_query = ids_query.limit(limit)
    ids = [int(i) for i in session.scalars(ids_query)]
    results: list[Result] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        results.extend(
            session.scalars(
                select(Result)
                .where(
                    Result.input_id.in_(chunk),
                    or_(_made_by(Result, first), _made_by(Result, second)),
                )
                .order_by(Result.input_id.desc(), Result.run, Result.frame)
            )
        )
    return results
