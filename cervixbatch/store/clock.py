"""The database's clock, as SQL: lease expiry is never computed with a worker's own clock.

Workers on several machines disagree about the time (a minute of drift is common without
NTP); if each compared leases with its own clock, a fast one would take over claims that
are still alive. So "now" and "now + N seconds" are evaluated by the database server,
once, for everyone.

On SQLite the expression renders text in SQLAlchemy's own storage format for DateTime
(``YYYY-MM-DD HH:MM:SS.ffffff``), so stored values compare correctly as text and read
back as datetimes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from cervixbatch.store.schema import UTCDateTime

__all__ = ["db_now", "db_now_plus"]

# SQLite's %f is "SS.SSS": three zeros make it SQLAlchemy's six-digit fraction.
_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f000'"


class db_now(FunctionElement[Any]):  # noqa: N801 - reads like the SQL function it is
    """The database server's current time (UTC)."""

    type = UTCDateTime()
    inherit_cache = True


class db_now_plus(FunctionElement[Any]):  # noqa: N801
    """The database server's current time plus ``seconds``."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: float) -> None:
        super().__init__(literal(float(seconds), Float()))


@compiles(db_now)
def _now_default(_element: db_now, _compiler: Any, **_kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(db_now, "postgresql")
def _now_postgresql(_element: db_now, _compiler: Any, **_kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _now_sqlite(_element: db_now, _compiler: Any, **_kw: Any) -> str:
    return f"strftime({_SQLITE_FORMAT}, 'now')"


@compiles(db_now_plus, "postgresql")
def _plus_postgresql(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(now() + make_interval(secs => {seconds}))"


@compiles(db_now_plus, "sqlite")
def _plus_sqlite(element: db_now_plus, compiler: Any, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime({_SQLITE_FORMAT}, 'now', printf('%+.3f seconds', {seconds}))"
