"""SQLite's own table hint, ``INDEXED BY``, for the few queries whose index SQLite would
not choose by itself.

SQLite keeps no statistics unless ``ANALYZE`` is run, and without them it takes an
equality on ``status`` for a selective condition: to find the latest failure it would
read every failed input through the status index and sort them, rather than take one
step down the partial index made for it. ``INDEXED BY`` names the index (and makes the
statement fail, rather than run slowly, if the index cannot serve it). SQLAlchemy renders
table hints only for the dialects that once had them; this lets SQLite render its own.
"""

from __future__ import annotations

from typing import Any, TypeVarTuple

from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.sql import Select

from cervixbatch.store.schema import Input

__all__ = ["sqlite_index"]

Ts = TypeVarTuple("Ts")


def _from_hint_text(_compiler: SQLiteCompiler, _table: Any, text: str) -> str:
    return text  # "FROM inputs INDEXED BY ix_…"


SQLiteCompiler.get_from_hint_text = _from_hint_text  # type: ignore[method-assign,assignment]


def sqlite_index(statement: Select[*Ts], index: str) -> Select[*Ts]:
    """``statement`` reading ``inputs`` through ``index`` on SQLite (elsewhere as is)."""
    return statement.with_hint(Input, f"INDEXED BY {index}", "sqlite")
