"""Each attempt at an input writes into a staging folder of its own; only the commit that
proves the attempt still holds its claim publishes it (a fence, not a hope).

A worker that stalls past its lease (SIGSTOP, a long pause, a partition from the
database) while another worker takes its input over may wake up mid-write. Its files land
in its own staging folder, never in the new owner's, and its commit finds the claim gone:
the folder is thrown away. Publishing renames the staged files onto their final names
inside the run's folder while the commit holds the input's row locked, so two attempts
never publish into one folder at once.

The folder is ``<run folder>/.stage-<owner>-<random>-a<attempt>``: hidden, inside the
input's own folder, and named by its owner so that recovery removes it once its writer
is provably dead (:func:`sweep_stages`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import structlog

from cervixbatch.errors import OutputError
from cervixbatch.outputs.atomic import TRANSIENT_ERRNOS, TempSweep, fsync_dir
from cervixbatch.outputs.outbox import FrameOutputs, Outbox, make_dirs
from cervixbatch.owner import OwnerState, ProcessOwner, owned_name, owner_state, parse_owned_name

__all__ = ["STAGE_PREFIX", "Stage", "stage_for", "sweep_stages"]

log = structlog.get_logger(__name__)

STAGE_PREFIX = ".stage-"
_FILE_FIELDS = (
    "cervix_mask",
    "lesion_mask",
    "overlay",
    "crop",
    "dicom_seg",
    "dicom_sc",
    "dicom_sr",  # the measurements (outputs/dicom_sr.py)
)


@dataclasses.dataclass(frozen=True, slots=True)
class Stage:
    """One attempt's staging folder and the run folder it publishes into."""

    root: Path  # the staging folder (made when the first frame is written)
    target: Path  # the run's folder: ``<outbox>/<input id>/`` or ``…/run_NNNN/``

    def frame_dir(self, frame: int, frame_count: int) -> Path:
        """Where one frame's files are staged (laid out as they will be published)."""
        if frame_count <= 1:
            return self.root
        return self.root / f"frame_{int(frame):04d}"

    def final(self, outputs: FrameOutputs) -> FrameOutputs:
        """The paths ``outputs`` will have once published."""
        moved: dict[str, Any] = {
            name: self._target_of(path)
            for name in _FILE_FIELDS
            if (path := getattr(outputs, name)) is not None
        }
        return dataclasses.replace(outputs, **moved)

    def publish(self, written: Sequence[FrameOutputs]) -> None:
        """Renames the staged files onto their final names (each rename atomic: a reader
        sees the old file or the new one), then makes the renames durable. Call it only
        while holding the input's claim in the open transaction."""
        folders: set[Path] = set()
        for outputs in written:
            for name in _FILE_FIELDS:
                staged = getattr(outputs, name)
                if staged is None:
                    continue
                final = self._target_of(staged)
                if final.parent not in folders:
                    make_dirs(final.parent, self.target)
                    folders.add(final.parent)
                _place(staged, final)
        for folder in folders:
            _place_durably(folder)
        self.discard()

    def discard(self) -> None:
        """Removes the staging folder and whatever is still in it (an attempt that lost its
        claim, failed, or was rejected leaves nothing behind)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _target_of(self, staged: Path) -> Path:
        return self.target / staged.relative_to(self.root)


def _place(staged: Path, final: Path) -> None:
    try:
        staged.replace(final)
    except OSError as exc:
        raise OutputError(
            f"cannot publish {final.name} in {final.parent}: {exc.strerror or exc}",
            transient=exc.errno in TRANSIENT_ERRNOS,
        ) from exc


def _place_durably(folder: Path) -> None:
    try:
        fsync_dir(folder)
    except OSError as exc:
        raise OutputError(
            f"cannot make the outputs in {folder} durable: {exc.strerror or exc}",
            transient=exc.errno in TRANSIENT_ERRNOS,
        ) from exc


def stage_for(outbox: Outbox, input_id: int, run: int, attempt: int) -> Stage:
    """The staging folder of one attempt at one run of an input, owned by this process."""
    target = outbox.run_dir(input_id, run)
    return Stage(root=target / owned_name(STAGE_PREFIX, f"a{int(attempt)}"), target=target)


def sweep_stages(outbox: Outbox) -> TempSweep:
    """Removes the staging folders whose writer is provably dead; counts all of them.
    Folders of live processes (a stalled worker that may still wake up and discard its
    own) and of other hosts stay."""
    sweep = TempSweep()
    states: dict[ProcessOwner, OwnerState] = {}
    for folder in _stage_folders(outbox.root):
        parsed = parse_owned_name(folder.name, STAGE_PREFIX)
        if parsed is None:
            sweep.kept_unknown += 1
            continue
        owner = parsed[0]
        state = states.get(owner) or states.setdefault(owner, owner_state(owner))
        if state is OwnerState.DEAD:
            shutil.rmtree(folder, ignore_errors=True)
            sweep.removed += 1
        elif state is OwnerState.ALIVE:
            sweep.kept_live += 1
        else:
            sweep.kept_unknown += 1
    if sweep.removed:
        log.info("staging_folders_removed", folders=sweep.removed)
    return sweep


def _stage_folders(root: Path) -> Iterable[Path]:
    """Staging folders lie in an input's folder or in one of its ``run_NNNN`` folders."""
    for input_dir in _subdirs(root):
        for entry in _subdirs(input_dir):
            if entry.name.startswith(STAGE_PREFIX):
                yield entry
            elif entry.name.startswith("run_"):
                yield from (e for e in _subdirs(entry) if e.name.startswith(STAGE_PREFIX))


def _subdirs(folder: Path) -> list[Path]:
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    return []
