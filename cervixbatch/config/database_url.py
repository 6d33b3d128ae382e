"""What a ``database.url`` names on disk: the one rule for a SQLite URL's file.

SQLAlchemy's reading, written with the standard library so that the layers that must not
import SQLAlchemy (the models, the configuration) ask the same question the same way:
``sqlite[+driver]://`` then one ``/``, then the file (percent-decoded), then an optional
``?query``. An empty file or ``:memory:`` is no file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

__all__ = ["absolute_sqlite_url", "is_sqlite_url", "sqlite_file"]


def is_sqlite_url(url: str) -> bool:
    """True for ``sqlite://...`` and ``sqlite+driver://...``."""
    scheme, separator, _ = url.partition("://")
    return bool(separator) and scheme.partition("+")[0] == "sqlite"


def _file_part(url: str) -> tuple[str, str]:
    """The raw (still percent-encoded) file of a SQLite URL and its ``?query`` (or "")."""
    rest = url.partition("://")[2]
    location, question, query = rest.partition("?")
    return location.removeprefix("/"), question + query


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, as given (relative or absolute); None for an
    in-memory database or another kind of database."""
    if not is_sqlite_url(url):
        return None
    name = unquote(_file_part(url)[0])
    if not name or name == ":memory:":
        return None
    return Path(name)


def absolute_sqlite_url(url: str, base: Path) -> str:
    """A SQLite URL to a relative file made absolute against ``base`` (the config file's
    folder); any other URL (absolute file, in memory, another database) unchanged."""
    file = sqlite_file(url)
    if file is None or file.is_absolute():
        return url
    raw, query = _file_part(url)
    scheme = url.partition("://")[0]
    return f"{scheme}:///{(base / raw).resolve()}{query}"
