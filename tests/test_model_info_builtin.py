"""`model-info builtin:demo` says, per stage, what the shipped model is and what it learnt from."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cervixbatch.cli import main


def test_model_info_builtin_demo_shows_each_stage_training_data() -> None:
    """Both stages are listed from their cards, each with its training data and use."""
    result = CliRunner().invoke(main, ["model-info", "builtin:demo", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info) == {"cervix", "lesion"}
    for entry in info.values():
        assert entry["training_data"]["image_count"] > 0
        assert entry["version"]
        assert "NOT for clinical use" in entry["intended_use"]
    text = CliRunner().invoke(main, ["model-info", "builtin:demo"]).output
    assert "cervix:" in text and "lesion:" in text and "trained on:" in text


def test_model_info_of_a_file_still_needs_its_stage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file without --stage, or one that does not exist, is a usage error, not a traceback."""
    missing = CliRunner().invoke(
        main, ["model-info", "--stage", "lesion", str(tmp_path / "x.keras")]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK")
    no_stage = CliRunner().invoke(main, ["model-info", str(model)])
    assert no_stage.exit_code == 2 and "--stage" in no_stage.output
