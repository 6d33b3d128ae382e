"""The INT8 gate's clinical figures: lesion decisions flipped at the report's threshold and
the largest change of lesion fraction, beside the mean Dice — measured on the masks
``process`` writes, recorded on the card and used by the gate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from support.fixed_maps import FixedMaps

from cervixbatch.model.int8 import MAX_DECISION_FLIP_SHARE, card_verdict
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.quantize.agreement import mask_agreement
from cervixbatch.tools.quantize.card import agreement_figures


def _cervix() -> FixedMaps:
    prob = np.zeros((128, 128), np.float32)
    cv2.ellipse(prob, (64, 64), (40, 34), 0, 0, 360, 0.9, -1)
    return FixedMaps(prob, 3)


def _lesion(radius: int) -> FixedMaps:
    prob = np.zeros((64, 64), np.float32)
    if radius:
        cv2.circle(prob, (32, 32), radius, 0.9, -1)
    return FixedMaps(prob, 1)


def _photos(tmp_path: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(5)
    paths = []
    for index in range(count):
        path = tmp_path / f"p{index:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_a_lesion_crossing_the_report_threshold_is_a_flipped_decision(tmp_path: Path) -> None:
    """A candidate whose lesion shrinks from above to below the report's positive
    threshold flips every photo's decision and its fraction change is measured, while a
    candidate that moves the lesion by the same pixels but stays positive flips none."""
    photos = _photos(tmp_path, 3)
    reference = Pipeline(_cervix(), _lesion(9), PipelineSettings(min_lesion_fraction=0.0))
    shrunk = mask_agreement(reference, _cervix(), _lesion(5), photos, batch_size=2)["lesion"]
    summary = shrunk.summary()
    assert summary["decision_flips"] == 3
    assert summary["decision_flip_share"] == 1.0
    assert summary["max_lesion_fraction_change"] > 0.03
    grown = mask_agreement(reference, _cervix(), _lesion(11), photos, batch_size=2)["lesion"]
    assert grown.summary()["decision_flips"] == 0
    assert grown.summary()["max_lesion_fraction_change"] > 0.0


def test_the_gate_refuses_a_high_dice_that_flips_decisions(tmp_path: Path) -> None:
    """A card whose mean Dice clears ``min_agreement_dice`` is still refused when more than
    2 % of the held-out photos' lesion decisions flip, and the reason says so; the same
    Dice with no flip passes."""
    photos = _photos(tmp_path, 2)
    reference = Pipeline(_cervix(), _lesion(9), PipelineSettings(min_lesion_fraction=0.0))
    agreed = mask_agreement(reference, _cervix(), _lesion(9), photos, batch_size=2)["lesion"]
    figures = agreement_figures(agreed, 0.5)
    assert figures["decision_flip_share"] == 0.0
    assert card_verdict({"agreement": figures}, stage="lesion", minimum=0.98).passed
    flipped = {**figures, "mean_dice": 0.995, "decision_flips": 3, "held_out": 100}
    flipped["decision_flip_share"] = 0.03
    verdict = card_verdict({"agreement": flipped}, stage="lesion", minimum=0.98)
    assert MAX_DECISION_FLIP_SHARE == 0.02
    assert not verdict.passed
    assert "flipped on 3.0%" in verdict.reason
    assert "more than 2%" in verdict.reason


def test_a_card_without_the_clinical_figures_fails_the_gate() -> None:
    """A card written before the figures existed (format 1: Dice only) fails the gate and
    says what it lacks, so that `quantize` is run again rather than trusted."""
    old = {"agreement": {"held_out": 50, "mean_dice": 0.999, "min_dice": 0.99}}
    verdict = card_verdict(old, stage="cervix", minimum=0.98)
    assert not verdict.passed
    assert "decision_flip_share" in verdict.reason


def test_the_search_scores_a_flipped_lesion_decision_as_total_disagreement() -> None:
    """The accuracy-controlled search scores a stage-2 input whose lesion decision flips
    (grid lesion over cervix area crossing the report's threshold) as 0, so the layers
    that cause it go back to float first; a shrink that keeps the decision keeps its Dice."""
    from cervixbatch.tools.quantize.search import ValidationItem, item_score

    reference = np.zeros((64, 64), np.uint8)
    reference[20:30, 20:30] = 1  # 100 cells of a 1000-cell cervix: 10 %, positive
    item = ValidationItem(np.zeros((64, 64, 1), np.float32), reference, 0.0, 1000.0)
    flipped = np.zeros_like(reference)
    flipped[20:26, 20:26] = 1  # 36 cells: 3.6 %, negative at 5 %
    kept = np.zeros_like(reference)
    kept[20:28, 20:28] = 1  # 64 cells: 6.4 %, still positive
    assert item_score("lesion", item, flipped, 0.05) == 0.0
    assert item_score("lesion", item, kept, 0.05) > 0.7
    assert item_score("lesion", item, flipped, None) > 0.5  # without the threshold: Dice
