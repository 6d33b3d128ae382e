"""The configuration: defaults, where it comes from, validation at the edge."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cervixbatch.cli import main
from cervixbatch.config import HIDDEN_KEYS, AfterAction, Config, load_config
from cervixbatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_shipped_config_loads_and_lists_every_key(tmp_path: Path) -> None:
    """The shipped config.toml is valid and names every key the settings object has."""
    config = load_config(REPO / "config.toml")
    assert config.paths.inbox == (REPO / "var" / "inbox").resolve()
    assert config.models.cervix == "builtin:demo"
    text = (REPO / "config.toml").read_text()
    import dataclasses

    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(config, section.name)):
            listed = f"\n{key.name} " in text or f"\n{key.name}=" in text
            hidden = f"{section.name}.{key.name}" in HIDDEN_KEYS  # for tests and benchmarks
            assert listed != hidden, key.name


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    """Relative paths and a relative SQLite URL resolve against the config file's folder."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "c.toml").write_text(
        '[paths]\ninbox = "in"\n[database]\nurl = "sqlite:///db/x.db"\n'
        '[models]\ncervix = "m/c.keras"\n'
    )
    config = load_config(folder / "c.toml")
    assert config.paths.inbox == folder / "in"
    assert config.database.url == f"sqlite:///{folder}/db/x.db"
    assert config.models.cervix == str(folder / "m" / "c.keras")
    assert config.models.lesion == "builtin:demo"


def test_environment_variable_is_used_without_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CERVIXBATCH_CONFIG names the file when --config is not given."""
    path = tmp_path / "env.toml"
    path.write_text('[watch]\nafter = "archive"\n')
    monkeypatch.setenv("CERVIXBATCH_CONFIG", str(path))
    assert load_config().watch.after is AfterAction.ARCHIVE


def test_named_file_must_exist(tmp_path: Path) -> None:
    """A config file named explicitly but missing is an error, not silent defaults."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[batch]\nsizee = 8\n", "batch.sizee", "unknown key"),
        ("[bogus]\nx = 1\n", "bogus", "unknown section"),
        ('[batch]\nsize = "8"\n', "batch.size", "expected an integer"),
        ("[batch]\nsize = true\n", "batch.size", "expected an integer"),
        ("[watch]\npolling = 1\n", "watch.polling", "expected true or false"),
        ('[watch]\nafter = "shred"\n', "watch.after", "one of"),
        ("[batch]\nsize = 0\n", "batch.size", "at least"),
        ("[models]\nmargin = 2.0\n", "models.margin", "between 0 and 1"),
        ('[dicom]\nallowed_callers = "A"\n', "dicom.allowed_callers", "list of strings"),
        ('[models]\ncervix_threshold = "median"\n', "models.cervix_threshold", '"otsu"'),
        ("[models]\ncervix_threshold = 1.5\n", "models.cervix_threshold", "between 0 and 1"),
        ('[models]\ncervix_region = "blob"\n', "models.cervix_region", "one of"),
        ("[models]\nlesion_input_size = 100\n", "models.lesion_input_size", "multiple of 16"),
        ('[dicom]\naccept_classes = ["CTImage"]\n', "dicom.accept_classes", "'CTImage'"),
        ("[dicom]\naccept_classes = []\n", "dicom.accept_classes", "at least one"),
        ('[dicom]\nallowed_peers = ["clinic-pc"]\n', "dicom.allowed_peers", "not an IP"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    """Unknown keys and wrong types raise a ConfigError naming the file and the key."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_seed_settings_are_read(tmp_path: Path) -> None:
    """The seed-faithful [models] keys take their named values ("otsu" a threshold too)."""
    from cervixbatch.config import CervixRegion, ChannelOrder, Resize

    path = tmp_path / "seed.toml"
    path.write_text(
        '[models]\ncervix_threshold = "otsu"\ncervix_region = "seed"\n'
        'cervix_channel_order = "bgr"\ncervix_resize = "cubic"\nlesion_resize = "linear"\n'
        "lesion_input_size = 256\n"
    )
    models = load_config(path).models
    assert models.cervix_threshold == "otsu"
    assert models.cervix_region is CervixRegion.SEED
    assert models.cervix_channel_order is ChannelOrder.BGR
    assert (models.cervix_resize, models.lesion_resize) == (Resize.CUBIC, Resize.LINEAR)
    assert (models.cervix_input_size, models.lesion_input_size) == (0, 256)


def test_wrong_key_exits_2_with_one_line(tmp_path: Path) -> None:
    """The CLI turns a bad key into exit status 2 and a single line on stderr."""
    path = tmp_path / "config.toml"
    path.write_text("[batch]\nsizee = 8\n")
    result = CliRunner().invoke(main, ["--config", str(path), "report"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "batch.sizee" in lines[0] and "unknown key" in lines[0]


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("metrics", "listen", "9108", "expected host:port"),
        ("metrics", "listen", ":9108", "expected host:port"),
        ("metrics", "listen", "0.0.0.0:70000", "out of range"),
        ("dicom", "listen", "::1:104", "IPv6 address in brackets"),
        ("dicom", "listen", "[nope]:104", "not an IPv6 address"),
        ("dicom", "forward", "pacs.example:104", "expected AET@host:port"),
        ("dicom", "forward", "PACS@pacs.example", "expected host:port"),
        ("dicom", "forward", "WAY_TOO_LONG_AE_TITLE@pacs:104", "AE title"),
    ],
)
def test_a_bad_address_exits_2_at_load_naming_its_key(
    tmp_path: Path, section: str, key: str, value: str, why: str
) -> None:
    """Listen and forward addresses are parsed when the settings load: a bad one is a
    configuration error (exit 2) naming the key, not a failure after start-up."""
    path = tmp_path / "config.toml"
    path.write_text(f'[{section}]\n{key} = "{value}"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "report"])
    assert result.exit_code == 2
    assert f"{section}.{key}" in result.stderr and why in result.stderr


def test_addresses_are_parsed_once_into_host_and_port(tmp_path: Path) -> None:
    """Good addresses load, and the config hands out their parsed form."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[dicom]\nlisten = "[::]:11112"\nforward = "PACS@pacs.example.org:104"\n'
        '[metrics]\nlisten = "0.0.0.0:9108"\n'
    )
    config = load_config(path)
    assert config.dicom.listen_address == ("::", 11112)
    assert config.dicom.forward_peer == ("PACS", "pacs.example.org", 104)
    assert config.metrics.listen_address == ("0.0.0.0", 9108)
    assert Config().metrics.listen_address is None and Config().dicom.forward_peer is None


def test_invalid_toml_exits_2(tmp_path: Path) -> None:
    """A file that is not TOML at all is a configuration error too (exit 2)."""
    path = tmp_path / "config.toml"
    path.write_text("[batch\n")
    result = CliRunner().invoke(main, ["--config", str(path), "report"])
    assert result.exit_code == 2
    assert "not valid TOML" in result.stderr


def test_credentials_are_redacted_for_logs() -> None:
    """The start-up log dict never shows a database password."""
    config = Config.from_mapping(
        {"database": {"url": "postgresql+psycopg://svc:s3cret@db/cb"}}, base=Path("/"), source="x"
    )
    assert "s3cret" not in str(config.as_log_dict())


def test_log_level_is_one_of_four_in_any_case(tmp_path: Path) -> None:
    """logging.level takes debug/info/warning/error in any case; anything else exits 2."""
    from cervixbatch.config import LogLevel

    path = tmp_path / "config.toml"
    path.write_text('[logging]\nlevel = "WARNING"\n')
    assert load_config(path).logging.level is LogLevel.WARNING
    path.write_text('[logging]\nlevel = "verbose"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "report"])
    assert result.exit_code == 2
    assert "logging.level" in result.stderr and "'debug'" in result.stderr
