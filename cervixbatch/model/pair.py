"""The two loaded stage models, and the pipeline built from them and the configuration."""

from __future__ import annotations

import dataclasses

import structlog

from cervixbatch.config import OTSU, Config
from cervixbatch.pipeline import Pipeline, PipelineSettings, Predictor

__all__ = ["Stages", "load_stages", "pipeline_for"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Stages:
    """The two loaded models and what identifies them in the results."""

    cervix: Predictor
    lesion: Predictor
    cervix_version: str
    lesion_version: str
    precision: str
    cervix_description: str = ""  # format and architecture, e.g. "keras2-h5-weights: ..."
    lesion_description: str = ""


def pipeline_for(config: Config, stages: Stages) -> Pipeline:
    """The two-stage pipeline with the configured thresholds and margin."""
    return Pipeline(
        stages.cervix,
        stages.lesion,
        PipelineSettings(
            cervix_threshold=config.models.cervix_threshold,
            lesion_threshold=config.models.lesion_threshold,
            margin=config.models.margin,
            min_cervix_fraction=config.models.min_cervix_fraction,
            cervix_resize=config.models.cervix_resize,
            lesion_resize=config.models.lesion_resize,
            cervix_channel_order=config.models.cervix_channel_order,
            cervix_region=config.models.cervix_region,
        ),
    )


def load_stages(config: Config) -> Stages:
    """Loads both models as configured (TensorFlow is imported here, not before)."""
    from cervixbatch.model.stage import OutputReduction, Stage, load_stage

    models = config.models
    cervix = load_stage(
        models.cervix,
        Stage.CERVIX,
        batch_size=config.batch.size,
        precision=models.precision,
        input_size=models.cervix_input_size or None,
        reduction=OutputReduction.SEED_GRAY
        if models.cervix_threshold == OTSU
        else OutputReduction.MEAN,
    )
    lesion = load_stage(
        models.lesion,
        Stage.LESION,
        batch_size=config.batch.size,
        precision=models.precision,
        input_size=models.lesion_input_size or None,
    )
    log.info(
        "models_loaded",
        cervix=cervix.version[:12],
        lesion=lesion.version[:12],
        cervix_input=cervix.input_size,
        lesion_input=lesion.input_size,
        precision=cervix.precision.value,
        device=cervix.device,
        cervix_model=f"{cervix.format}: {cervix.architecture}",
        lesion_model=f"{lesion.format}: {lesion.architecture}",
    )
    cervix.warm_up()
    lesion.warm_up()
    return Stages(
        cervix=cervix,
        lesion=lesion,
        cervix_version=cervix.version,
        lesion_version=lesion.version,
        precision=cervix.precision.value,
        cervix_description=f"{cervix.format}: {cervix.architecture}",
        lesion_description=f"{lesion.format}: {lesion.architecture}",
    )
