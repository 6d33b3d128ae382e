"""The two loaded stage models, and the pipeline built from them and the configuration."""

from __future__ import annotations

import structlog

from cervixbatch.config import Config
from cervixbatch.model.loaded import Stages
from cervixbatch.model.stage_names import Stage
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings

__all__ = ["load_stages", "pipeline_for"]

log = structlog.get_logger(__name__)


def pipeline_for(config: Config, stages: Stages) -> Pipeline:
    """The two-stage pipeline with the configured thresholds and margin."""
    return Pipeline(
        stages.cervix,
        stages.lesion,
        PipelineSettings.from_config(config.models),
    )


def load_stages(config: Config) -> Stages:
    """Loads both models on the configured runtime (TensorFlow is imported here, not before)."""
    if config.models.simulate_device_ms > 0:
        from cervixbatch.model.simulated import simulated_stages

        log.info("simulated_device", ms_per_image=config.models.simulate_device_ms)
        return simulated_stages(config.models.simulate_device_ms)
    from cervixbatch.model.framework import require_tensorflow

    require_tensorflow()  # missing or broken: one clear error, not an import traceback
    from cervixbatch.model.device import configure_tensorflow
    from cervixbatch.model.options import LoadOptions
    from cervixbatch.model.runtime import load_predictor, precision_label

    options = LoadOptions.from_config(config)
    gpus = configure_tensorflow().gpus
    cervix = load_predictor(config.models.cervix, Stage.CERVIX, options, gpus=gpus)
    lesion = load_predictor(config.models.lesion, Stage.LESION, options, gpus=gpus)
    log.info(
        "models_loaded",
        cervix=cervix.version[:12],
        lesion=lesion.version[:12],
        cervix_input=cervix.input_size,
        lesion_input=lesion.input_size,
        runtime=cervix.runtime,
        precision=precision_label(cervix.precision, lesion.precision),
        device=cervix.device,
        cervix_model=_description(cervix, config.models.cervix, Stage.CERVIX),
        lesion_model=_description(lesion, config.models.lesion, Stage.LESION),
    )
    cervix.warm_up()
    lesion.warm_up()
    return Stages(
        cervix=cervix,
        lesion=lesion,
        cervix_version=cervix.version,
        lesion_version=lesion.version,
        precision=precision_label(cervix.precision, lesion.precision),
        cervix_description=_description(cervix, config.models.cervix, Stage.CERVIX),
        lesion_description=_description(lesion, config.models.lesion, Stage.LESION),
        runtime=cervix.runtime,
    )


def _description(loaded: object, ref: str, stage: str) -> str:
    """``format: architecture`` of a loaded stage: TensorFlow's says it; for another
    runtime (converted, maybe from a cache) it is read from the file."""
    from pathlib import Path

    from cervixbatch.model.loading import describe_file

    fmt, architecture = getattr(loaded, "format", ""), getattr(loaded, "architecture", "")
    if fmt:
        return f"{fmt}: {architecture}"
    return "builtin: demo" if ref.startswith("builtin:") else describe_file(Path(ref), stage)
