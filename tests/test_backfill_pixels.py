"""The Ray backfill's rows: an input's pixels travel in the ``pixels`` tensor column, not in
its pickled payload (pickling 10 MB frames, and Ray's conversions of a bytes column, took
two thirds of the model actor's time), and come back to the same frames."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cervixbatch.backfill.stages import (
    PAYLOAD,
    PIXELS,
    InFlight,
    from_rows,
    put_pixels,
    take_pixels,
    to_rows,
)
from cervixbatch.imaging.frames import DecodedInput, Frame, InputKind
from cervixbatch.outputs.staging import Stage
from cervixbatch.store.leases import ClaimedInput
from cervixbatch.worker.batch_state import WorkItem
from cervixbatch.worker.overlapped_jobs import FrameJob


def _flight(tmp_path: Path, shapes: list[tuple[int, int]], seed: int = 0) -> InFlight:
    rng = np.random.default_rng(seed)
    frames = tuple(
        Frame(i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (h * 2, w * 2))
        for i, (h, w) in enumerate(shapes)
    )
    item = WorkItem(
        ClaimedInput(1, "0" * 64, ("in.dcm",), 0), Stage(tmp_path / "s", tmp_path / "t")
    )
    item.decoded = DecodedInput(InputKind.DICOM, "dicom", frames)
    jobs = [FrameJob(item, f.index, f) for f in frames]
    return InFlight(item, jobs)


def _rgbs(flight: InFlight) -> list[np.ndarray]:
    assert flight.item.decoded is not None
    return [frame.rgb for frame in flight.item.decoded.frames]


def test_pixels_leave_the_payload_and_come_back(tmp_path: Path) -> None:
    """A photo's frame and a multi-frame input's equal frames travel in the pixels column:
    each pickled row is small, and the frames come back equal, the jobs on the same ones."""
    single = _flight(tmp_path, [(300, 400)], seed=1)
    multi = _flight(tmp_path, [(120, 160)] * 3, seed=2)
    expected = [[a.copy() for a in _rgbs(f)] for f in (single, multi)]
    batch = to_rows([single, multi])
    # what is pickled is the input without its pixels
    assert all(len(payload) < 20_000 for payload in batch[PAYLOAD])
    assert [p.shape for p in batch[PIXELS]] == [(1, 300, 400, 3), (3, 120, 160, 3)]
    back = from_rows(batch)
    for flight, rgbs in zip(back, expected, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(_rgbs(flight), rgbs, strict=True))
        # the jobs see the same frames as the input (the actor crops from job.frame)
        assert flight.item.decoded is not None
        assert all(job.frame is flight.item.decoded.frames[job.index] for job in flight.jobs)


def test_frames_of_different_sizes_and_undecoded_inputs_stay_in_the_payload(
    tmp_path: Path,
) -> None:
    """Frames of different sizes stay in the pickle (no column entry taken), an input that
    was never decoded travels as it is."""
    mixed = _flight(tmp_path, [(100, 100), (50, 80)], seed=3)
    before = [a.copy() for a in _rgbs(mixed)]
    assert len(take_pixels(mixed)) == 0  # nothing taken: they travel pickled
    assert [a.shape for a in _rgbs(mixed)] == [(100, 100, 3), (50, 80, 3)]
    unread = _flight(tmp_path, [], seed=4)
    unread.item.decoded = None
    batch = to_rows([mixed, unread])
    back = from_rows(batch)
    assert all(np.array_equal(a, b) for a, b in zip(_rgbs(back[0]), before, strict=True))
    assert back[1].item.decoded is None
    assert len(pickle.dumps(back[1])) < 20_000


def test_put_pixels_of_nothing_leaves_the_frames(tmp_path: Path) -> None:
    """An empty pixels entry (nothing was taken) leaves the frames as they are."""
    flight = _flight(tmp_path, [(10, 10)], seed=5)
    put_pixels(flight, np.zeros((0, 1, 1, 3), dtype=np.uint8))
    assert _rgbs(flight)[0].shape == (10, 10, 3)
