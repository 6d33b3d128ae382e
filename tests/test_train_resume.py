"""`train --resume` from a model file saved without its training state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cervixbatch.cli import main


@pytest.mark.slow
def test_resume_from_an_uncompiled_model_trains_on(
    tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    """A .keras file saved uncompiled (as a packed demo model is) resumes: it is compiled
    with the command's settings instead of failing on its missing optimizer."""
    from cervixbatch.model.unet import build_cervix_unet

    runner = CliRunner()
    data = tmp_path / "data"
    result = runner.invoke(
        main, ["synth", "--count", "6", "--out", str(data), "--seed", "2", "--size", "160x120"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "cervix.keras"
    build_cervix_unet(32, base_filters=4, depth=2).save(out)  # never compiled
    result = runner.invoke(
        main,
        [
            "--config", str(make_config()), "train", "--stage", "cervix",
            "--images", str(data / "images"), "--masks", str(data / "cervix"),
            "--out", str(out), "--epochs", "1", "--batch-size", "2", "--resume",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_name("cervix.card.json").read_text())
    assert card["input_shape"] == [32, 32, 3]  # the resumed model, not a fresh 128 one
    assert card["training"]["epochs_run"] == 1
