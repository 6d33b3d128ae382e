"""What ``train`` can be told: a leaf, so that the fit (``training.train``) and the card
it writes (``tools.cards``) both read it without importing each other."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cervixbatch.model.stage_names import Stage
from cervixbatch.tools.annotations.shapes import Labels

__all__ = ["TrainOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class TrainOptions:
    """Everything ``train`` can be told; defaults are the seeds' choices."""

    stage: Stage
    images: Path
    out: Path
    masks: Path | None = None  # PNG masks of the stage's target, one per image stem
    cervix_masks: Path | None = None
    annotations: tuple[Path, ...] = ()  # seed box / COCO / LabelMe JSON files or folders
    labels: Labels = dataclasses.field(default_factory=Labels)
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float | None = None  # None: the stage's seed rate (see default_learning_rate)
    validation_split: float = 0.2
    seed: int = 0
    resume: bool = False
    input_size: int | None = None  # None: 128 (cervix) or 512 (lesion), as in the seeds
    filters: int | None = None  # None: 32 (cervix) or 16 (lesion)
    dice_term: bool = True  # lesion: add a Dice term to binary cross-entropy
    seed_recipe: bool = False  # lesion: seed 000's BCE alone at its rate (ignores dice_term)
    dropout: float | None = None  # lesion: None is seed 000's training value, 0.05
    margin: float = 0.15
    patience: int = 8
    max_images: int | None = None
    init: Path | None = None  # fine-tune from this model file (any format model.loading takes)
    warmup_epochs: float = 1.0  # linear learning-rate warm-up over this many epochs
    collapse_epochs: int = 3  # stop when the model collapses for this many epochs; 0: never
    augment: str = "seed"  # "seed": the seed's geometric set; "colposcopy": tools.augment
    validation_list: Path | None = None  # image stems to validate on, instead of a random split
    mask_kind: str = "region"  # "outline": --masks are drawn outlines, filled by tools.outline
