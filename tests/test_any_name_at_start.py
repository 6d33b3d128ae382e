"""Start-up never fails because of what lies in the inbox or the outbox: the recovery of
held and temp files takes any name (property-based, over real folders), and a real daemon
starts with such files present."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.daemon import Daemon, counts, photos, wait_for

from cervixbatch.delivery.disposal import HELD_PREFIX, restore_held_files
from cervixbatch.outputs.atomic import TEMP_PREFIX
from cervixbatch.outputs.outbox import Outbox
from cervixbatch.owner import this_process

if TYPE_CHECKING:
    from collections.abc import Callable

ME = this_process()
# The name reported in issue 22: this host's name, a boot that is not this one, an empty
# original name. Start-up raised ValueError on it, at every start.
REPORTED = f"{HELD_PREFIX}{ME.host}-00000000-1-1-x-"
_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="/\x00")  # any file name
_HEX = "0123456789abcdef"


def _field() -> st.SearchStrategy[str]:
    """One dash-separated field of an owned name: valid pieces of this process's own
    identity, of other ones, and junk."""
    return st.one_of(
        st.sampled_from(
            [
                ME.host,
                ME.machine,
                ME.boot,
                ME.boot[:8],
                str(ME.pidns),
                str(ME.pid),
                str(ME.start),
                "none",
                "noboot",
                "0",
                "1",
                "4194305",
                "99999999999999999999999",
                "",
                ".",
                "..",
            ]
        ),
        st.text(alphabet=_HEX, min_size=1, max_size=32),
        st.integers(min_value=0, max_value=10**25).map(str),
        st.text(_NAME_CHARS, max_size=12),
    )


def _names(prefix: str) -> st.SearchStrategy[str]:
    near = st.lists(_field(), min_size=0, max_size=9).map(lambda f: prefix + "-".join(f))
    anything = st.text(_NAME_CHARS, max_size=120).map(lambda t: prefix + t)
    return st.one_of(near, anything)


def _plant(folder: Path, name: str | bytes, content: bytes) -> bool:
    """Writes a file under ``name`` in ``folder``; False when the filesystem refuses the
    name (too long)."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    if len(raw) > 255 or raw in {b".", b".."} or b"/" in raw or b"\x00" in raw:
        return False
    try:
        # bytes, not a Path: a name need not be UTF-8
        with open(os.path.join(os.fsencode(folder), raw), "xb") as out:  # noqa: PTH118, PTH123
            out.write(content)
    except FileExistsError:
        return False
    return True


def _contents(folder: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in folder.rglob("*") if p.is_file())


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(name=_names(HELD_PREFIX), nested=st.booleans())
@example(name=REPORTED, nested=False)
@example(name=f"{HELD_PREFIX}{ME.token()[:-1]}-x-.", nested=False)
@example(name=f"{HELD_PREFIX}{ME.host}-{ME.boot[:8]}-99999999999999999999-1-x-a", nested=True)
@example(name=f"{HELD_PREFIX}{ME.host}-{ME.boot[:8]}-0-1-x-a", nested=False)
def test_held_file_recovery_takes_any_name_and_loses_no_file(name: str, nested: bool) -> None:
    """Putting back held files never raises, whatever their names, and never loses a file:
    every byte written into the inbox is still in it afterwards."""
    with tempfile.TemporaryDirectory() as temp:
        inbox = Path(temp) / "inbox"
        folder = inbox / "sub" if nested else inbox
        folder.mkdir(parents=True)
        if not _plant(folder, name, b"a photo moved aside"):
            return
        (folder / "beside.jpg").write_bytes(b"an ordinary photo")
        before = _contents(inbox)
        restore_held_files(inbox)
        assert _contents(inbox) == before


@_SETTINGS
@given(raw=st.binary(min_size=0, max_size=200))
def test_held_file_recovery_takes_names_that_are_not_utf8(raw: bytes) -> None:
    """Names of bytes that are no UTF-8 (a share written by another system) do not make
    the recovery raise either."""
    with tempfile.TemporaryDirectory() as temp:
        inbox = Path(temp)
        if not _plant(inbox, os.fsencode(HELD_PREFIX) + raw, b"bytes"):
            return
        before = _contents(inbox)
        restore_held_files(inbox)
        assert _contents(inbox) == before


@_SETTINGS
@given(name=_names(TEMP_PREFIX), old=st.booleans())
@example(name=f"{TEMP_PREFIX}{ME.host}-00000000-1-1-x-", old=False)
@example(name=f"{TEMP_PREFIX}{ME.host}-{ME.boot[:8]}-99999999999999999999-1-x-a", old=True)
def test_temp_file_sweep_takes_any_name(name: str, old: bool) -> None:
    """The outbox's sweep of temp files never raises, whatever their names, and never
    touches a file that is not a temp file."""
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        folder = root / "00000001"
        folder.mkdir()
        if not _plant(folder, name, b"half of an overlay"):
            return
        if old:
            os.utime(folder / name, (time.time() - 3 * 86_400,) * 2)
        (folder / "overlay.jpg").write_bytes(b"a whole overlay")
        Outbox(root).remove_temp_files()
        assert (folder / "overlay.jpg").read_bytes() == b"a whole overlay"


@pytest.mark.slow
def test_a_daemon_starts_and_works_with_odd_held_and_temp_names_present(
    make_config: Callable[..., Path], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A real daemon starts (ready), processes a photo and stops with status 0 although
    the inbox and the outbox hold files with names no worker would give (the reported one
    among them); the odd files are still there."""
    config = make_config()
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    (outbox / "00000001").mkdir(parents=True)
    odd = [
        REPORTED,
        f"{HELD_PREFIX}{ME.host}-{ME.boot[:8]}-99999999999999999999-1-x-a.jpg",
        f"{HELD_PREFIX}{ME.token()}-x-.",
        f"{HELD_PREFIX}--------",
    ]
    for name in odd:
        assert _plant(inbox, name, b"not a photo")
        assert _plant(outbox / "00000001", TEMP_PREFIX + name[len(HELD_PREFIX) :], b"half")
    photos(inbox, 1)
    daemon = daemons(config)
    daemon.wait_event("ready")
    wait_for(lambda: counts(config).get("done") == 1, 90, "1 done", daemon)
    assert daemon.stop() == 0
    assert all((inbox / name).is_file() for name in odd)
