"""One typed, frozen settings object, loaded once from TOML, validated, passed down.

Unknown sections or keys and wrong types are a :class:`ConfigError` naming the file and
the key. Relative paths (and a relative SQLite URL) resolve against the config file's own
folder, so the daemon behaves the same whatever its working directory.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Self

from cervixbatch.config.addresses import SocketAddress, parse_socket_address
from cervixbatch.config.checks import accept_class_uids, check_ranges, coerce
from cervixbatch.config.database_url import absolute_sqlite_url
from cervixbatch.config.dicom import (
    DicomConfig,
    DicomWebConfig,
    WebhookConfig,
)
from cervixbatch.config.types import (
    AfterAction,
    CervixRegion,
    ChannelOrder,
    LogFormat,
    LogLevel,
    Precision,
    Resize,
    Runtime,
)
from cervixbatch.errors import ConfigError

__all__ = [
    "HIDDEN_KEYS",
    "BatchConfig",
    "Config",
    "DatabaseConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelsConfig",
    "OutputConfig",
    "PathsConfig",
    "ReportConfig",
    "RetentionConfig",
    "WatchConfig",
    "load_config",
    "resolve_config_path",
]

ENV_VAR = "CERVIXBATCH_CONFIG"
# Keys for tests and benchmarks: valid in any file, not listed in the shipped one.
HIDDEN_KEYS = frozenset({"models.simulate_device_ms"})
DEFAULT_FILE = "config.toml"


@dataclasses.dataclass(frozen=True, slots=True)
class PathsConfig:
    """Where inputs are watched and outputs written."""

    inbox: Path = Path("var/inbox")
    outbox: Path = Path("var/outbox")


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where results are recorded."""

    url: str = "sqlite:///var/cervixbatch.db"
    # A database that went away (a restart, a failover, a full disk) is waited for this
    # long, claiming nothing and keeping what is in hand, before the service exits 1.
    outage_seconds: float = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class WatchConfig:
    """How the inbox is watched and what happens to finished inputs."""

    settle_seconds: float = 1.0
    polling: bool = False
    after: AfterAction = AfterAction.KEEP
    archive: Path = Path("var/archive")
    rescan_seconds: float = 300.0  # inotify drops events when its queue overflows


@dataclasses.dataclass(frozen=True, slots=True)
class BatchConfig:
    """How inputs are grouped, retried and leased."""

    size: int = 8
    max_wait_ms: int = 250
    max_attempts: int = 3  # transient failures are retried this often, then "failed"
    # A claim lapses this long after its worker's last lease renewal (renewed 5x per period):
    # a dead worker's inputs are taken over by the others within about 20 s.
    lease_seconds: float = 15.0
    stall_seconds: float = 600.0  # no progress this long in a batch: the worker is hung
    read_workers: int = 0  # 0: one per core
    write_workers: int = 0
    pipeline: bool = True  # read, segment and write overlapped across batches


@dataclasses.dataclass(frozen=True, slots=True)
class ModelsConfig:
    """The two stage models and the thresholds applied to their output."""

    cervix: str = "builtin:demo"
    lesion: str = "builtin:demo"
    precision: Precision = Precision.AUTO
    runtime: Runtime = Runtime.AUTO
    min_agreement_dice: float = 0.98  # an INT8 model whose card shows less is refused
    # converted OpenVINO models (and INT8 ones of builtin:demo); unset: "model-cache"
    # beside a SQLite database, in memory only for other databases
    cache: Path | None = None
    cervix_threshold: float | str = 0.5  # or "otsu": seed 001's to_binary_mask
    lesion_threshold: float = 0.5
    margin: float = 0.15  # the cervix box grows by this share of its size on every side
    min_cervix_fraction: float = 0.002  # smaller components are noise, not a cervix
    min_lesion_fraction: float = 0.005  # smaller lesion regions (share of the cervix) are dropped
    cervix_resize: Resize = Resize.AREA
    lesion_resize: Resize = Resize.AREA
    cervix_channel_order: ChannelOrder = ChannelOrder.RGB
    cervix_region: CervixRegion = CervixRegion.LARGEST
    cervix_input_size: int = 0  # weights-only files: 0 is the seed's 128
    lesion_input_size: int = 0  # weights-only files: 0 is the seed's 512
    # Hidden (HIDDEN_KEYS): > 0 replaces both models by a simulated accelerator that waits
    # this long per image and returns fixed masks (model/simulated.py).
    simulate_device_ms: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class OutputConfig:
    """How output images are written."""

    overlay_max_side: int = 2048  # 0: overlays at the photo's full size
    jpeg_quality: int = 90


@dataclasses.dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Limits checked before an input is decoded."""

    max_file_mb: float = 512.0
    max_pixels: int = 100_000_000
    max_frames: int = 1000
    min_side: int = 16
    max_total_pixels: int = 1_000_000_000  # all frames of one input together (~3 GB as RGB)
    min_free_mb: float = 1024.0  # below this free space on the outbox, no new inputs are taken


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The optional Prometheus endpoint."""

    listen: str = ""

    @property
    def listen_address(self) -> SocketAddress | None:
        """``listen`` parsed (checked at load); None when no endpoint is wanted."""
        return parse_socket_address(self.listen) if self.listen else None


@dataclasses.dataclass(frozen=True, slots=True)
class ReportConfig:
    """What the report counts as lesion-positive."""

    lesion_positive_threshold: float = 0.05  # a frame counts as lesion-positive above this


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long outputs and rows are kept. 0: forever."""

    outputs_days: int = 0  # output files of results older than this are removed
    # outputs_days also removes the outputs of an input's latest results (by default only
    # those of earlier runs, which `reprocess` superseded)
    include_latest: bool = False
    rows_days: int = 0  # inputs finished longer ago, whose files left the inbox, are forgotten


@dataclasses.dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and format."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.AUTO


_SECTIONS: dict[str, type[Any]] = {
    "paths": PathsConfig,
    "database": DatabaseConfig,
    "watch": WatchConfig,
    "batch": BatchConfig,
    "models": ModelsConfig,
    "output": OutputConfig,
    "limits": LimitsConfig,
    "dicom": DicomConfig,
    "dicomweb": DicomWebConfig,
    "webhook": WebhookConfig,
    "metrics": MetricsConfig,
    "report": ReportConfig,
    "retention": RetentionConfig,
    "logging": LoggingConfig,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Every setting of cervixbatch. Paths in it are absolute."""

    paths: PathsConfig = PathsConfig()
    database: DatabaseConfig = DatabaseConfig()
    watch: WatchConfig = WatchConfig()
    batch: BatchConfig = BatchConfig()
    models: ModelsConfig = ModelsConfig()
    output: OutputConfig = OutputConfig()
    limits: LimitsConfig = LimitsConfig()
    # frozen, from config_dicom: a factory only because ruff cannot see they are immutable
    dicom: DicomConfig = dataclasses.field(default_factory=DicomConfig)
    dicomweb: DicomWebConfig = dataclasses.field(default_factory=DicomWebConfig)
    webhook: WebhookConfig = dataclasses.field(default_factory=WebhookConfig)
    metrics: MetricsConfig = MetricsConfig()
    report: ReportConfig = ReportConfig()
    retention: RetentionConfig = RetentionConfig()
    logging: LoggingConfig = LoggingConfig()
    source: Path | None = None  # the file it came from, None for built-in defaults

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, base: Path, source: str) -> Self:
        """Validates a parsed TOML mapping and resolves its relative paths against ``base``."""
        sections: dict[str, Any] = {}
        for name, value in data.items():
            section_type = _SECTIONS.get(name)
            if section_type is None:
                raise ConfigError("unknown section", file=source, key=name)
            if not isinstance(value, dict):
                raise ConfigError("must be a table, e.g. [" + name + "]", file=source, key=name)
            sections[name] = _build_section(section_type, name, value, source)
        config = cls(**sections, source=Path(source) if source != "<defaults>" else None)
        return config.resolved(base)

    def resolved(self, base: Path) -> Self:
        """A copy whose relative paths and SQLite URL are made absolute against ``base``."""
        paths = PathsConfig(
            inbox=_absolute(self.paths.inbox, base), outbox=_absolute(self.paths.outbox, base)
        )
        watch = dataclasses.replace(self.watch, archive=_absolute(self.watch.archive, base))
        database = dataclasses.replace(
            self.database, url=absolute_sqlite_url(self.database.url, base)
        )
        models = dataclasses.replace(
            self.models,
            cervix=_absolute_model_ref(self.models.cervix, base),
            lesion=_absolute_model_ref(self.models.lesion, base),
            cache=_absolute(self.models.cache, base) if self.models.cache else None,
        )
        web = self.dicomweb
        dicomweb = dataclasses.replace(
            web, credentials_file=_absolute_name(web.credentials_file, base),
            ca_file=_absolute_name(web.ca_file, base),
        )  # fmt: skip
        webhook = dataclasses.replace(
            self.webhook, secret_file=_absolute_name(self.webhook.secret_file, base)
        )
        return dataclasses.replace(
            self, paths=paths, watch=watch, database=database, models=models,
            dicomweb=dicomweb, webhook=webhook,
        )  # fmt: skip

    @property
    def read_limits_bytes(self) -> int:
        """The file-size limit in bytes."""
        return int(self.limits.max_file_mb * 1024 * 1024)

    def as_log_dict(self) -> dict[str, Any]:
        """The settings as plain values, for the start-up log event (no secrets in URLs)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                out[field.name] = {
                    k: str(v) if isinstance(v, Path | enum.Enum) else v
                    for k, v in dataclasses.asdict(value).items()
                }
        out["database"]["url"] = _redact_url(self.database.url)
        return out


def resolve_config_path(explicit: Path | None) -> tuple[Path, bool]:
    """Where the configuration comes from: ``--config``, then the environment, then ./config.toml.

    Returns the path and whether the user named it (a named file must exist).
    """
    if explicit is not None:
        return explicit, True
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env), True
    return Path(DEFAULT_FILE), False


def load_config(explicit: Path | None = None) -> Config:
    """Loads and validates the configuration; the built-in defaults when no file exists."""
    path, named = resolve_config_path(explicit)
    if not path.is_file():
        if named:
            raise ConfigError("no such file", file=str(path))
        return Config().resolved(Path.cwd())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", file=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({exc})", file=str(path)) from exc
    return Config.from_mapping(data, base=path.resolve().parent, source=str(path))


def _build_section(section_type: type[Any], name: str, values: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(section_type)
    known = {f.name for f in dataclasses.fields(section_type)}
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise ConfigError("unknown key", file=source, key=dotted)
        kwargs[key] = coerce(raw, hints[key], dotted, source)
        if dotted == "dicom.accept_classes":
            kwargs[key] = accept_class_uids(kwargs[key], dotted, source)
    try:
        section = section_type(**kwargs)
    except TypeError as exc:  # pragma: no cover - every field has a default
        raise ConfigError(str(exc), file=source, key=name) from exc
    check_ranges(section, name, source)
    return section


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _absolute_name(name: str, base: Path) -> str:
    """A file setting that may be empty (""): made absolute when set."""
    return str(_absolute(Path(name).expanduser(), base)) if name else ""


def _absolute_model_ref(ref: str, base: Path) -> str:
    if ref.startswith("builtin:"):
        return ref
    return str(_absolute(Path(ref).expanduser(), base))


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
