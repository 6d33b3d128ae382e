"""Tests of the second synthetic generator (synth v2) and the `synth` command's flags."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cervixbatch.cli import main
from cervixbatch.tools.synth import v1 as synth_v1
from cervixbatch.tools.synth.colour_stats import REAL_CLOSE_UPS, percentiles, photo_stats
from cervixbatch.tools.synth.v1 import SynthSample
from cervixbatch.tools.synth.v2 import Feature, Selection, make_sample, parse_features
from cervixbatch.tools.synth.v2.dataset import MANIFEST
from cervixbatch.tools.synth.v2.plan import draw_plan

SMALL = (200, 150)
CLOSE_UPS = Selection(only=frozenset({Feature.CLOSE_UP}))
FULL_VIEWS = Selection(only=frozenset({Feature.FULL_VIEW}))
# synth v1 (cervixbatch.tools.synth.v1) as shipped before synth v2: seeds 7 and 8 at 320x240
V1_SHA256 = "e15566df35c63cdbca2707e0d3b68076c7931d6e42e38454f94a1c690c46ba32"


def _sample(
    seed: int | list[int], size: tuple[int, int] | None = SMALL, selection: Selection | None = None
) -> SynthSample:
    return make_sample(np.random.default_rng(seed), size, selection=selection)


def _same(a: SynthSample, b: SynthSample) -> bool:
    return all(
        x.tobytes() == y.tobytes()
        for x, y in zip(
            (a.rgb, a.cervix_mask, a.lesion_mask),
            (b.rgb, b.cervix_mask, b.lesion_mask),
            strict=True,
        )
    )


@pytest.fixture(scope="module")
def mix() -> list[SynthSample]:
    return [_sample([3, i]) for i in range(40)]


def test_v1_is_reproduced_byte_for_byte():
    """The first generation still gives exactly the bytes it gave before synth v2 existed."""
    digest = hashlib.sha256()
    for seed in (7, 8):
        s = synth_v1.make_sample(np.random.default_rng(seed), (320, 240))
        for array in (s.rgb, s.cervix_mask, s.lesion_mask):
            digest.update(array.tobytes())
    assert digest.hexdigest() == V1_SHA256


def test_same_seed_gives_identical_bytes_and_seeds_differ():
    """One seed reproduces photo and masks byte for byte; another seed gives another photo."""
    assert _same(_sample(11), _sample(11))
    assert not np.array_equal(_sample(11).rgb, _sample(12).rgb)


@pytest.mark.parametrize("size", [(200, 150), (333, 211), (1600, 1200)])
def test_shapes_dtypes_binary_masks_and_lesion_inside_cervix(size: tuple[int, int]):
    """Photo and masks have the requested size (also when upscaled), masks are 0/255 and the
    lesion lies inside the cervix."""
    for seed in range(3):
        s = _sample([5, seed], size)
        width, height = size
        assert s.rgb.shape == (height, width, 3) and s.rgb.dtype == np.uint8
        assert s.cervix_mask.shape == s.lesion_mask.shape == (height, width)
        assert set(np.unique(s.cervix_mask)) <= {0, 255}
        assert set(np.unique(s.lesion_mask)) <= {0, 255}
        assert not np.any((s.lesion_mask > 0) & (s.cervix_mask == 0))


def test_default_sizes_include_archive_sizes_and_twelve_megapixels():
    """Without --size, one seed draws small archive photos (low_resolution) as well as the
    large photos of today's cameras, up to 12 MP."""
    plans = [draw_plan(np.random.default_rng([3, i]), None, Selection()) for i in range(200)]
    small = [p.size for p in plans if p.has(Feature.LOW_RESOLUTION)]
    assert small and all(w * h <= 800 * 600 for w, h in small)
    assert max(w * h for w, h in (p.size for p in plans)) >= 12_000_000
    s = _sample([3, 0], None, Selection(only=frozenset({Feature.LOW_RESOLUTION})))
    assert s.rgb.shape[1] <= 800


def test_one_seed_gives_a_mix_of_framings_and_settings(mix: list[SynthSample]):
    """40 photos of one seed hold close-ups and full views, lesions and lesion-free photos,
    and most of the named settings."""
    seen = [s.features for s in mix]
    close = sum("close_up" in f for f in seen)
    assert 10 <= close <= 34 and sum("full_view" in f for f in seen) == 40 - close
    with_lesion = sum(bool(s.lesion_mask.any()) for s in mix)
    assert 15 <= with_lesion <= 37
    assert len(set().union(*seen)) >= 12


def test_close_ups_fill_most_of_the_frame_and_full_views_do_not():
    """Close-ups show 50-95 % cervix, full views 10-40 %, inside a dark circular field."""
    close = [float((_sample([8, i], SMALL, CLOSE_UPS).cervix_mask > 0).mean()) for i in range(12)]
    full_samples = [_sample([8, i], (240, 180), FULL_VIEWS) for i in range(12)]
    full = [float((s.cervix_mask > 0).mean()) for s in full_samples]
    assert all(0.45 <= f <= 0.97 for f in close), close
    assert all(0.06 <= f <= 0.42 for f in full), full
    for s in full_samples:  # the corners lie outside the colposcope's round field: dark
        corners = np.concatenate([s.rgb[:6, :6].reshape(-1, 3), s.rgb[-6:, -6:].reshape(-1, 3)])
        assert corners.mean() < 40


def test_hold_out_changes_only_the_photos_that_had_the_setting():
    """Holding a setting out removes it and leaves every other photo of the seed unchanged."""
    held = Selection(hold_out=frozenset({Feature.GREEN_FILTER, Feature.PLASTIC_SPECULUM}))
    changed = 0
    for i in range(30):
        plain, without = _sample([4, i]), _sample([4, i], selection=held)
        assert not ({"green_filter", "plastic_speculum"} & without.features)
        if {"green_filter", "plastic_speculum"} & plain.features:
            changed += 1
            assert not _same(plain, without)
            assert (
                np.array_equal(plain.cervix_mask, without.cervix_mask)
                or "plastic_speculum" in plain.features
            )
        else:
            assert _same(plain, without)
    assert changed >= 2


def test_only_puts_the_setting_in_every_photo():
    """--only gives every photo the setting; a plastic speculum implies a full view."""
    only = Selection(only=frozenset({Feature.PLASTIC_SPECULUM}))
    for i in range(5):
        features = _sample([6, i], selection=only).features
        assert {"plastic_speculum", "full_view"} <= features
        assert "metal_speculum" not in features


def test_green_filter_photos_are_green():
    """A green-filter photo is green-dominated; the same photo without the filter is not."""
    only = Selection(only=frozenset({Feature.GREEN_FILTER}))
    for i in range(4):
        rgb = _sample([7, i], selection=only).rgb.reshape(-1, 3).astype(float).mean(axis=0)
        assert rgb[1] > rgb[0] and rgb[1] > rgb[2]


def test_glare_clusters_without_lesion_are_hard_negatives():
    """Photos with glare clusters and no lesion have an empty lesion mask and more
    saturated white pixels than the same photos without the clusters."""
    glare = Selection(only=frozenset({Feature.GLARE_CLUSTER}), hold_out=frozenset({Feature.LESION}))
    calm = Selection(hold_out=frozenset({Feature.GLARE_CLUSTER, Feature.LESION}))
    more = 0
    for i in range(8):
        with_glare, without = _sample([9, i], selection=glare), _sample([9, i], selection=calm)
        assert not with_glare.lesion_mask.any()
        more += photo_stats(with_glare.rgb).glare > photo_stats(without.rgb).glare
    assert more >= 7


@pytest.mark.parametrize(
    ("hold_out", "only", "message"),
    [
        ("lesion", "lesion", "both held out and required"),
        ("", "close_up,full_view", "either a close_up or a full_view"),
        ("", "metal_speculum,plastic_speculum", "one speculum"),
        ("", "close_up,plastic_speculum", "only seen in full views"),
        ("full_view", "metal_speculum", "only seen in full views"),
    ],
)
def test_contradictory_selections_are_refused(hold_out: str, only: str, message: str):
    """A selection that no photo can satisfy is a ValueError saying why."""
    with pytest.raises(ValueError, match=message):
        Selection(hold_out=parse_features(hold_out), only=parse_features(only))


def test_unknown_feature_names_list_the_known_ones():
    """A misspelt setting is refused with the list of real names."""
    with pytest.raises(ValueError, match=r"unknown synth feature 'green'.*green_filter"):
        parse_features("green,lesion")
    assert parse_features(["lesion, blood", "mucus"]) == {
        Feature.LESION,
        Feature.BLOOD,
        Feature.MUCUS,
    }


def test_close_up_colour_and_glare_medians_lie_in_the_real_ranges():
    """Synth-v2 close-ups shrunk to 130 px: the median L*, a*, b* and glare share lie
    inside the 10th-90th percentile range of 91 real close-ups (issue 16)."""
    stats = [photo_stats(_sample([2, i], (480, 360), CLOSE_UPS).rgb) for i in range(30)]
    ours = percentiles(stats)
    for name, (low, _, high) in REAL_CLOSE_UPS.items():
        assert low <= ours[name][1] <= high, (name, ours[name], REAL_CLOSE_UPS[name])


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["synth", *args])
    return result.exit_code, result.output


def test_cli_writes_v2_with_a_manifest_and_v1_unchanged(tmp_path: Path):
    """`synth` writes v2 photos with a manifest of their settings; `--generator v1` writes
    exactly the files the first generation writes."""
    code, output = _invoke(
        "--count", "3", "--out", str(tmp_path / "v2"), "--seed", "4", "--size", "160x120",
        "--only", "glare_cluster", "--hold-out", "lesion,green_filter",
    )  # fmt: skip
    assert code == 0, output
    manifest = json.loads((tmp_path / "v2" / MANIFEST).read_text())
    assert manifest["only"] == ["glare_cluster"]
    assert manifest["hold_out"] == ["green_filter", "lesion"]
    assert [s["stem"] for s in manifest["samples"]] == [f"synth_0000{i}" for i in range(3)]
    for sample in manifest["samples"]:
        assert "glare_cluster" in sample["features"] and "lesion" not in sample["features"]
        assert sample["lesion_fraction"] == 0.0 and 0 < sample["cervix_fraction"] < 1
        mask = cv2.imread(str(tmp_path / "v2" / "lesion" / f"{sample['stem']}.png"), 0)
        assert mask is not None and not mask.any()
    code, output = _invoke(
        "--count", "2", "--out", str(tmp_path / "v1"), "--seed", "4", "--size", "160x120",
        "--generator", "v1",
    )  # fmt: skip
    assert code == 0, output
    synth_v1.write_dataset(tmp_path / "direct", 2, seed=4, size=(160, 120))
    written = sorted(p.relative_to(tmp_path / "v1") for p in (tmp_path / "v1").rglob("*.*"))
    assert len(written) == 6
    for rel in written:
        assert (tmp_path / "v1" / rel).read_bytes() == (tmp_path / "direct" / rel).read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "v1", "--hold-out", "lesion"], "choose synth-v2 settings"),
        (["--only", "greenfilter"], "unknown synth feature 'greenfilter'"),
        (["--only", "close_up,full_view"], "either a close_up or a full_view"),
    ],
)
def test_cli_refuses_bad_settings_with_exit_2(tmp_path: Path, args: list[str], message: str):
    """Unknown or contradictory settings are a usage error (exit 2) naming the problem."""
    code, output = _invoke("--count", "1", "--out", str(tmp_path), *args)
    assert code == 2
    assert message in output
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir())


def test_cli_help_names_every_feature():
    """`synth --help` lists every setting that --hold-out and --only accept."""
    code, output = _invoke("--help")
    assert code == 0
    flat = " ".join(output.split())
    for feature in Feature:
        assert feature.value in flat
