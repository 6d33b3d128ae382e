"""One rule per question: the SQLite file a ``database.url`` names is read one way.

Before, four places took the file out of the URL by hand; one of them (the inbox's own
paths) kept the ``?query`` in the file name and took ``:memory:`` for a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from cervixbatch.config import absolute_sqlite_url, load_config, sqlite_file
from cervixbatch.delivery.disposal import FINAL_REJECTIONS, may_dispose
from cervixbatch.errors import RejectReason
from cervixbatch.intake.discovery import FileTooLargeError, hash_file
from cervixbatch.intake.rules import own_paths
from cervixbatch.model.loading import file_sha256
from cervixbatchd.notify import status_line

CASES = [
    ("sqlite:///state/cervixbatch.db", Path("state/cervixbatch.db")),
    ("sqlite:////var/lib/cervixbatch/cervixbatch.db", Path("/var/lib/cervixbatch/cervixbatch.db")),
    ("sqlite:////srv/db/results.db?mode=ro", Path("/srv/db/results.db")),
    ("sqlite:///relative.db?mode=ro&timeout=5", Path("relative.db")),
    ("sqlite+pysqlite:///driver.db", Path("driver.db")),
    ("sqlite:///with%20space.db", Path("with space.db")),
    ("sqlite:///:memory:", None),
    ("sqlite:///:memory:?cache=shared", None),
    ("sqlite://", None),
    ("postgresql://cervix:secret@db.example/cervixbatch", None),
    ("postgresql+psycopg://db.example/cervixbatch?sslmode=require", None),
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_sqlite_file_of_a_url(url: str, expected: Path | None) -> None:
    """Relative, absolute, with a query, in memory or not SQLite: the file or None."""
    assert sqlite_file(url) == expected


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_sqlite_file_agrees_with_sqlalchemy(url: str, expected: Path | None) -> None:
    """The file named is the one SQLAlchemy's own parser (and so the engine) opens."""
    parsed = make_url(url)
    opened = parsed.database if parsed.get_backend_name() == "sqlite" else None
    assert sqlite_file(url) == (Path(opened) if opened and opened != ":memory:" else None)


def test_relative_sqlite_url_is_made_absolute_with_its_query(tmp_path: Path) -> None:
    """A relative file is anchored at the config's folder; its query and driver survive."""
    base = tmp_path.resolve()
    assert (
        absolute_sqlite_url("sqlite:///a/b.db?mode=ro", base) == f"sqlite:///{base}/a/b.db?mode=ro"
    )
    assert absolute_sqlite_url("sqlite:///:memory:", base) == "sqlite:///:memory:"
    assert absolute_sqlite_url("sqlite:////abs.db", base) == "sqlite:////abs.db"
    assert absolute_sqlite_url("postgresql://h/d", base) == "postgresql://h/d"


def test_inbox_skips_the_database_named_with_a_query(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The database's files are the service's own even when the URL carries ``?mode=ro``,
    and an in-memory database adds no path (the old by-hand reading added ``:memory:``)."""
    config = load_config(make_config(database__url="sqlite:///inbox/state.db?mode=ro"))
    owned = set(own_paths(config))
    database = (tmp_path / "inbox" / "state.db").resolve()
    assert {database, database.with_name("state.db-wal")} <= owned
    assert not any("?" in path.name for path in owned)

    config = load_config(make_config(database__url="sqlite:///:memory:"))
    assert not any(":memory:" in str(path) for path in own_paths(config))


def test_one_chunked_sha256_for_inputs_and_models(tmp_path: Path) -> None:
    """An input's digest and a model's version are the sha256 of the bytes, over chunks
    (a file of several chunks), and a model of two files hashes their concatenation."""
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(bytes(range(256)) * 9000)  # over two 1 MiB chunks
    second.write_bytes(b"weights")
    assert hash_file(first) == hashlib.sha256(first.read_bytes()).hexdigest()
    both = hashlib.sha256(first.read_bytes() + second.read_bytes()).hexdigest()
    assert file_sha256(first, second) == both


def test_input_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    """A file larger than ``max_bytes`` raises FileTooLargeError; one at the limit hashes."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x" * 1000)
    with pytest.raises(FileTooLargeError):
        hash_file(photo, max_bytes=999)
    assert hash_file(photo, max_bytes=1000) == hashlib.sha256(b"x" * 1000).hexdigest()


def test_final_rejections_are_the_reasons_that_say_what_the_content_is() -> None:
    """``RejectReason.final`` marks the same eight codes the disposal lists, as strings."""
    assert {str(reason) for reason in FINAL_REJECTIONS} == {
        "unsupported_format",
        "unsupported_sop_class",
        "no_pixel_data",
        "unsupported_dicom",
        "too_large",
        "file_too_large",
        "too_many_frames",
        "too_small",
    }
    assert may_dispose(None) and may_dispose("too_large") and not may_dispose("truncated")
    assert not RejectReason.CHANGED.final and RejectReason.TOO_SMALL.final


def test_status_words_come_from_the_status_enum() -> None:
    """systemd's status line names every status in the Enum's order, as before."""
    counts = {"queued": 1, "processing": 2, "done": 3, "rejected": 4, "failed": 5}
    assert status_line(counts) == "1 queued, 2 processing, 3 done, 4 rejected, 5 failed"
