"""How the INT8 (or OpenVINO bfloat16) models in a model cache agree with the float ones
on photos no step of ``quantize`` saw: the gate's own figures, out of sample.

``cervixbatch quantize`` records on its card the agreement on its held-out photos. This
script measures the same figures (``tools/quantize/agreement.py``: mean and lowest Dice of
the written masks, lesion decisions flipped at ``report.lesion_positive_threshold``, the
largest change of lesion fraction; one stage swapped at a time) on any other folder of
photos, e.g. synthetic sets made with other seeds, or real photos, and says whether the
gate (``model.int8.card_verdict``) would pass on them.

    .venv/bin/python benchmarks/int8_agreement.py --config C.toml --images DIR
        [--limit N] [--precision int8|bfloat16]

The INT8 IR files are read as they are (their card's own verdict is printed beside, not
enforced), so that a model the gate refused can be measured too. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from cervixbatch.config import Precision, load_config
from cervixbatch.intake.rules import InputRule
from cervixbatch.model.int8 import card_verdict, int8_paths, read_card
from cervixbatch.model.loading import file_sha256
from cervixbatch.model.openvino_rt import OpenVinoStage, _core, compile_stage, float_ir, model_files
from cervixbatch.model.options import cache_folder
from cervixbatch.model.stage_names import Stage
from cervixbatch.segmentation.two_stage import Pipeline, PipelineSettings
from cervixbatch.tools.quantize.agreement import mask_agreement
from cervixbatch.tools.quantize.card import agreement_figures


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    """Measures and prints the agreement of each stage."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--precision", choices=["int8", "bfloat16"], default="int8")
    args = parser.parse_args()
    config = load_config(args.config)
    cache = cache_folder(config)
    batch = config.batch.size
    photos = sorted(InputRule(args.images).files())
    if args.limit:
        photos = photos[: args.limit]
    floats: dict[str, OpenVinoStage] = {}
    others: dict[str, OpenVinoStage] = {}
    cards: dict[str, Any] = {}
    for name in ("cervix", "lesion"):
        ref = getattr(config.models, name)
        version = file_sha256(*model_files(ref, Stage(name)))
        model = float_ir(ref, Stage(name), version, cache)

        def stage(
            ir: Any, precision: Precision, name: str = name, version: str = version, ref: str = ref
        ) -> Any:
            return OpenVinoStage(
                compile_stage(ir, batch, precision),
                stage=Stage(name),
                version=version,
                source=ref,
                batch_size=batch,
                precision=precision,
            )

        floats[name] = stage(model, Precision.FLOAT32)
        if args.precision == "int8":
            paths = int8_paths(ref, name, cache)
            others[name] = stage(_core().read_model(paths.xml), Precision.INT8)
            card = read_card(paths.card)
            verdict = card_verdict(card, stage=name, minimum=config.models.min_agreement_dice)
            cards[name] = {"passed": verdict.passed, "reason": verdict.reason}
        else:
            others[name] = stage(model, Precision.MIXED_BFLOAT16)
    reference = Pipeline(
        floats["cervix"], floats["lesion"], PipelineSettings.from_config(config.models)
    )
    started = time.perf_counter()
    agreed = mask_agreement(
        reference,
        others["cervix"],
        others["lesion"],
        photos,
        batch_size=batch,
        positive_threshold=config.report.lesion_positive_threshold,
    )
    out: dict[str, Any] = {
        "cpu": _cpu(),
        "images": str(args.images),
        "photos": len(photos),
        "precision": args.precision,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": {},
    }
    for name, agreement in agreed.items():
        figures = agreement_figures(agreement, "")
        verdict = card_verdict(
            {"agreement": figures, "precision": args.precision},
            stage=name,
            minimum=config.models.min_agreement_dice,
        )
        keep = (
            "held_out",
            "mean_dice",
            "min_dice",
            "largest_disagreement",
            "decision_flips",
            "decision_flip_share",
            "flipped_images",
            "max_lesion_fraction_change",
        )
        out["stages"][name] = {key: figures[key] for key in keep} | {
            "gate_passes_here": verdict.passed,
            "card": cards.get(name),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
