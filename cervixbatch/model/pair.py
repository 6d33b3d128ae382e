"""The two loaded stage models, and the pipeline built from them and the configuration."""

from __future__ import annotations

import dataclasses

import structlog

from cervixbatch.config import Config
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
        ),
    )


def load_stages(config: Config) -> Stages:
    """Loads both models as configured (TensorFlow is imported here, not before)."""
    if config.models.simulate_device_ms > 0:
        from cervixbatch.model.simulated import simulated_stages

        log.info("simulated_device", ms_per_image=config.models.simulate_device_ms)
        return simulated_stages(config.models.simulate_device_ms)
    from cervixbatch.model.stage import Stage, load_stage

    cervix = load_stage(
        config.models.cervix,
        Stage.CERVIX,
        batch_size=config.batch.size,
        precision=config.models.precision,
    )
    lesion = load_stage(
        config.models.lesion,
        Stage.LESION,
        batch_size=config.batch.size,
        precision=config.models.precision,
    )
    log.info(
        "models_loaded",
        cervix=cervix.version[:12],
        lesion=lesion.version[:12],
        cervix_input=cervix.input_size,
        lesion_input=lesion.input_size,
        precision=cervix.precision.value,
        device=cervix.device,
    )
    cervix.warm_up()
    lesion.warm_up()
    return Stages(
        cervix=cervix,
        lesion=lesion,
        cervix_version=cervix.version,
        lesion_version=lesion.version,
        precision=cervix.precision.value,
    )
