"""Tests of the synthetic colposcopy generator."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cervixbatch.outputs.atomic import TEMP_PREFIX, temp_owner
from cervixbatch.owner import this_process
from cervixbatch.tools.synth.v1 import (
    DEFAULT_SIZES,
    SynthSample,
    make_sample,
    parse_size,
    write_dataset,
)

SMALL = (160, 120)


def _sample(seed: int, size: tuple[int, int] = SMALL) -> SynthSample:
    return make_sample(np.random.default_rng(seed), size)


@pytest.fixture(scope="module")
def samples() -> list[SynthSample]:
    return [_sample(seed) for seed in range(30)]


def test_same_seed_gives_identical_bytes():
    """The same seed reproduces the photo and both masks byte for byte."""
    a, b = _sample(7, (320, 240)), _sample(7, (320, 240))
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.cervix_mask.tobytes() == b.cervix_mask.tobytes()
    assert a.lesion_mask.tobytes() == b.lesion_mask.tobytes()


def test_different_seeds_differ():
    """Different seeds give different photos and cervix masks."""
    a, b = _sample(1), _sample(2)
    assert not np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.cervix_mask, b.cervix_mask)


@pytest.mark.parametrize("size", [(160, 120), (333, 211), (1280, 960)])
def test_shapes_dtypes_and_binary_masks(size: tuple[int, int]):
    """Photo and masks have the requested size (also when upscaled), uint8, masks only 0/255."""
    s = _sample(3, size)
    width, height = size
    assert s.rgb.shape == (height, width, 3)
    assert s.cervix_mask.shape == s.lesion_mask.shape == (height, width)
    for arr in (s.rgb, s.cervix_mask, s.lesion_mask):
        assert arr.dtype == np.uint8
        assert arr.flags.c_contiguous
    assert set(np.unique(s.cervix_mask)) <= {0, 255}
    assert set(np.unique(s.lesion_mask)) <= {0, 255}


def test_default_size_is_one_of_the_default_sizes():
    """Without a size, the photo takes one of DEFAULT_SIZES (width, height)."""
    s = make_sample(np.random.default_rng(0))
    height, width = s.rgb.shape[:2]
    assert (width, height) in DEFAULT_SIZES
    assert s.cervix_mask.shape == (height, width)


def test_lesion_is_inside_cervix(samples: list[SynthSample]):
    """Every lesion pixel is also a cervix pixel."""
    for s in samples:
        assert not np.any((s.lesion_mask > 0) & (s.cervix_mask == 0))


def test_cervix_fraction_is_plausible(samples: list[SynthSample]):
    """The visible cervix covers a plausible share of the photo, and sizes vary."""
    fractions = [float((s.cervix_mask > 0).mean()) for s in samples[:20]]
    assert all(0.03 < f < 0.55 for f in fractions), fractions
    assert max(fractions) - min(fractions) > 0.1


def test_some_samples_have_no_lesion_and_most_have_one(samples: list[SynthSample]):
    """About a fifth of photos are lesion-free; most have a lesion."""
    with_lesion = sum(bool(s.lesion_mask.any()) for s in samples)
    assert 1 <= len(samples) - with_lesion <= 12
    assert with_lesion >= 18


def test_masks_agree_with_photo(samples: list[SynthSample]):
    """Lesion pixels are paler (less saturated) than the cervix just around them."""
    compared = 0
    for s in samples:
        lesion = s.lesion_mask > 0
        around = cv2.dilate(s.lesion_mask, np.ones((7, 7), np.uint8)) > 0
        ring = around & ~lesion & (s.cervix_mask > 0)
        if lesion.sum() < 20 or ring.sum() < 20:
            continue
        saturation = cv2.cvtColor(s.rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
        assert saturation[lesion].mean() < saturation[ring].mean()
        compared += 1
    assert compared >= 15


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return np.asarray(image)


def test_write_dataset_layout_and_stems(tmp_path: Path):
    """write_dataset writes the three files per stem, reports progress, leaves no temp files."""
    done: list[int] = []
    stems = write_dataset(tmp_path, 2, seed=5, size=(96, 72), start=10, on_progress=done.append)
    assert stems == ["synth_00010", "synth_00011"]
    assert done == [1, 2]
    for stem in stems:
        photo = _read(tmp_path / "images" / f"{stem}.jpg")
        assert photo.shape == (72, 96, 3)
        for folder in ("cervix", "lesion"):
            mask = _read(tmp_path / folder / f"{stem}.png")
            assert mask.shape == (72, 96)
            assert mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(names) == 6
    assert not any(".tmp" in n for n in names)


def test_written_masks_equal_sample_masks(tmp_path: Path):
    """The PNG masks on disk are exactly the sample's masks for rng [seed, index]."""
    write_dataset(tmp_path, 1, seed=4, size=(96, 72), start=3)
    s = make_sample(np.random.default_rng([4, 3]), (96, 72))
    assert np.array_equal(_read(tmp_path / "cervix" / "synth_00003.png"), s.cervix_mask)
    assert np.array_equal(_read(tmp_path / "lesion" / "synth_00003.png"), s.lesion_mask)


def test_sample_does_not_depend_on_count_or_start(tmp_path: Path):
    """Sample i is byte-identical whether the run writes 3 or 5 samples, or only that one."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_dataset(a, 3, seed=9, size=SMALL)
    write_dataset(b, 5, seed=9, size=SMALL)
    write_dataset(c, 1, seed=9, size=SMALL, start=2)
    for i in range(3):
        for rel in (f"images/synth_{i:05d}.jpg", f"cervix/synth_{i:05d}.png"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes()
    rel = "lesion/synth_00002.png"
    assert (c / rel).read_bytes() == (b / rel).read_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("640x480", (640, 480)), ("4128X3096", (4128, 3096)), (" 32 x 10000 ", (32, 10000))],
)
def test_parse_size_accepts(text: str, expected: tuple[int, int]):
    """parse_size reads WIDTHxHEIGHT, case-insensitive x, spaces allowed."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "640", "640x", "x480", "640*480", "-640x480", "6.4x4.8", "31x480", "640x10001"]
)
def test_parse_size_rejects(text: str):
    """parse_size raises ValueError for malformed or out-of-range sizes."""
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@given(st.integers(32, 10000), st.integers(32, 10000))
def test_parse_size_round_trips(width: int, height: int):
    """Any in-range WIDTHxHEIGHT parses back to the same pair."""
    assert parse_size(f"{width}x{height}") == (width, height)


def test_synth_files_reach_the_disk_under_an_owned_temp_name_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each photo and mask is fsynced under a hidden temp name that names this process
    (so the owner sweep can tell a crash's leftover), while its final name does not exist
    yet; then renamed, and its folder fsynced: no half-written file under a final name."""
    synced: list[Path] = []
    real = os.fsync

    def observed(fd: int) -> None:
        path = Path(f"/proc/self/fd/{fd}").readlink()
        if path.is_file():
            final = path.with_name(path.name.rsplit("-", 1)[-1])
            assert not final.exists(), f"{final.name} visible before its bytes were synced"
        synced.append(path)
        real(fd)

    monkeypatch.setattr(os, "fsync", observed)
    write_dataset(tmp_path, 1, seed=2, size=(64, 48))
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [str(p.relative_to(tmp_path)) for p in files] == [
        "cervix/synth_00000.png",
        "images/synth_00000.jpg",
        "lesion/synth_00000.png",
    ]
    for final in files:
        (temp,) = [p for p in synced if p.parent == final.parent and p.name.endswith(final.name)]
        assert temp.name.startswith(TEMP_PREFIX)
        assert temp_owner(temp.name) == this_process()
        assert synced.index(temp) < synced.index(final.parent)  # the rename, synced after
