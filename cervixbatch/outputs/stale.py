"""Output files no row names: those of an input that ended failed or rejected, and those an
earlier attempt wrote that the latest one did not (an old ``crop.jpg`` when the cervix is
no longer found, a SEG that is now skipped).

An input's folder is named by its id and holds nothing but its outputs, so everything in
it is the input's — except temp files (``.tmp-*``): those belong to a writer still at
work, or to recovery. Symlinks are removed as links, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable
from pathlib import Path

import structlog

from cervixbatch.outputs.atomic import TEMP_PREFIX
from cervixbatch.outputs.outbox import FrameOutputs, Outbox

__all__ = ["remove_outputs", "remove_stale_outputs"]

log = structlog.get_logger(__name__)

_FRAME_PREFIX = "frame_"


def remove_outputs(outbox: Outbox, input_id: int, run: int = 1) -> int:
    """Removes every output file of one run of an input (and its emptied folders); returns
    how many. Other runs' files (``reprocess``) are never touched."""
    return _sweep(outbox.run_dir(input_id, run), keep=frozenset(), input_id=input_id)


def remove_stale_outputs(
    outbox: Outbox, input_id: int, written: Iterable[FrameOutputs], run: int = 1
) -> int:
    """Removes the files of this run of the input that are not among ``written`` (this
    attempt's outputs); returns how many. A ``run_NNNN`` folder (another run) is never
    entered: only ``frame_NNNN`` folders are."""
    keep = frozenset(
        str(path)
        for outputs in written
        for path in (
            outputs.cervix_mask,
            outputs.lesion_mask,
            outputs.overlay,
            outputs.crop,
            outputs.dicom_seg,
            outputs.dicom_sc,
            outputs.dicom_sr,
        )
        if path is not None
    )
    return _sweep(outbox.run_dir(input_id, run), keep=keep, input_id=input_id)


def _sweep(folder: Path, *, keep: frozenset[str], input_id: int) -> int:
    problems: list[str] = []
    removed = _sweep_folder(folder, keep, depth=0, problems=problems)
    if removed:
        log.info("stale_outputs_removed", input_id=input_id, files=removed)
    if problems:
        # Not fatal: the files stay until the input is processed again.
        log.warning("stale_outputs_not_removed", input_id=input_id, errors=sorted(set(problems)))
    return removed


def _sweep_folder(folder: Path, keep: frozenset[str], *, depth: int, problems: list[str]) -> int:
    removed = 0
    for entry in _entries(folder, problems):
        if entry.name.startswith(TEMP_PREFIX):
            continue  # a writer's, or recovery's to judge
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if depth == 0 and entry.name.startswith(_FRAME_PREFIX):
                removed += _sweep_folder(path, keep, depth=1, problems=problems)
                _remove_if_empty(path)
        elif str(path) not in keep:
            removed += _unlink(path, problems)
    if not keep:
        _remove_if_empty(folder)
    return removed


def _entries(folder: Path, problems: list[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        problems.append(_name(exc))
        return []


def _unlink(path: Path, problems: list[str]) -> int:
    """1 when the file (or link) is removed, else 0."""
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        problems.append(_name(exc))
        return 0
    return 1


def _name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (a temp file), or gone: both are fine
        folder.rmdir()
