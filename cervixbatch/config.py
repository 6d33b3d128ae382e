"""One typed, frozen settings object, loaded once from TOML, validated, passed down.

Unknown sections or keys and wrong types are a :class:`ConfigError` naming the file and
the key. Relative paths (and a relative SQLite URL) resolve against the config file's own
folder, so the daemon behaves the same whatever its working directory.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Self

from cervixbatch.errors import ConfigError

__all__ = [
    "HIDDEN_KEYS",
    "AfterAction",
    "BatchConfig",
    "CervixRegion",
    "ChannelOrder",
    "Config",
    "DatabaseConfig",
    "DicomConfig",
    "LimitsConfig",
    "LogFormat",
    "LoggingConfig",
    "MetricsConfig",
    "ModelsConfig",
    "OutputConfig",
    "PathsConfig",
    "Precision",
    "ReportConfig",
    "Resize",
    "RetentionConfig",
    "Runtime",
    "WatchConfig",
    "load_config",
    "resolve_config_path",
]

ENV_VAR = "CERVIXBATCH_CONFIG"
# Keys for tests and benchmarks: valid in any file, not listed in the shipped one.
HIDDEN_KEYS = frozenset({"models.simulate_device_ms"})
DEFAULT_FILE = "config.toml"

DEFAULT_ACCEPT_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
)
"""The DICOM SOP classes a colposcope writes: ``[dicom] accept_classes`` by default."""


class AfterAction(enum.StrEnum):
    """What happens to an input file once it is done or rejected."""

    KEEP = "keep"
    ARCHIVE = "archive"
    DELETE = "delete"


class Precision(enum.StrEnum):
    """Numeric precision of inference. ``auto`` picks per device (see model.device)."""

    AUTO = "auto"
    FLOAT32 = "float32"
    MIXED_BFLOAT16 = "mixed_bfloat16"
    MIXED_FLOAT16 = "mixed_float16"
    INT8 = "int8"  # OpenVINO only: the model `cervixbatch quantize` wrote, agreement-gated


class Runtime(enum.StrEnum):
    """What runs the models. ``auto``: OpenVINO when installed and inference is on a CPU."""

    AUTO = "auto"
    TENSORFLOW = "tensorflow"
    OPENVINO = "openvino"


class Resize(enum.StrEnum):
    """How a photo or crop is shrunk to a model's input size (OpenCV interpolations)."""

    AREA = "area"  # ours: area averaging, no aliasing
    LINEAR = "linear"  # seed 001's training data (cv2.resize's default)
    CUBIC = "cubic"  # seed 001's predict input and seed 000's crops (resize_image.py)


class ChannelOrder(enum.StrEnum):
    """The channel order a colour model is fed."""

    RGB = "rgb"
    BGR = "bgr"  # seed 001's predict script (cv2.imread), though it trained on RGB


class CervixRegion(enum.StrEnum):
    """How the binarised stage-1 mask becomes the cervix region and its crop box."""

    LARGEST = "largest"  # ours: 3×3 opening, largest component, holes filled, box + margin
    # seed 001: morphology_clean (opening, closing with disk(5)), largest contour, and
    # find_bbox/transform_bbox's arithmetic (margin on the model grid, floors)
    SEED = "seed"


OTSU = "otsu"


class LogFormat(enum.StrEnum):
    """``auto``: readable lines on a terminal, JSON otherwise (journald keeps the fields)."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


@dataclasses.dataclass(frozen=True, slots=True)
class PathsConfig:
    """Where inputs are watched and outputs written."""

    inbox: Path = Path("var/inbox")
    outbox: Path = Path("var/outbox")


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where results are recorded."""

    url: str = "sqlite:///var/cervixbatch.db"


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
    # A claim lapses this long after its worker's last heartbeat (renewed 5x per period):
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
class DicomConfig:
    """DICOM outputs and the optional Storage SCP."""

    outputs: bool = True
    listen: str = ""
    ae_title: str = "CERVIXBATCH"
    allowed_callers: tuple[str, ...] = ()  # calling AE titles; empty: nobody; ["*"]: any
    allowed_peers: tuple[str, ...] = ()  # addresses or networks ("10.1.2.0/24"); empty: any
    # SOP classes segmented (UIDs or PS3.6 keywords; stored as UIDs); any other DICOM
    # object is rejected as unsupported_sop_class. Secondary Capture also needs a modality
    # of XC, ES, OT or none.
    accept_classes: tuple[str, ...] = DEFAULT_ACCEPT_CLASSES
    max_associations: int = 4  # concurrent associations the Storage SCP accepts
    max_association_mb: float = 2048.0  # data one association may store; more is refused
    forward: str = ""  # "AET@host:port": C-STORE the SEG and SC there once written
    forward_retries: int = 3  # further attempts after a failed forward
    forward_backoff_seconds: float = 2.0  # wait before retry n: this x 2**(n-1)


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The optional Prometheus endpoint."""

    listen: str = ""


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

    level: str = "info"
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
    dicom: DicomConfig = DicomConfig()
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
        database = DatabaseConfig(url=_absolute_sqlite_url(self.database.url, base))
        models = dataclasses.replace(
            self.models,
            cervix=_absolute_model_ref(self.models.cervix, base),
            lesion=_absolute_model_ref(self.models.lesion, base),
            cache=_absolute(self.models.cache, base) if self.models.cache else None,
        )
        return dataclasses.replace(self, paths=paths, watch=watch, database=database, models=models)

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
        kwargs[key] = _coerce(raw, hints[key], dotted, source)
        if dotted == "dicom.accept_classes":
            kwargs[key] = _accept_classes(kwargs[key], dotted, source)
    try:
        section = section_type(**kwargs)
    except TypeError as exc:  # pragma: no cover - every field has a default
        raise ConfigError(str(exc), file=source, key=name) from exc
    _check_ranges(section, name, source)
    return section


def _coerce(raw: Any, hint: Any, key: str, source: str) -> Any:  # noqa: C901, PLR0911, PLR0912
    """Checks one value against its annotated type, converting where TOML has no such type."""

    def wrong(expected: str) -> ConfigError:
        return ConfigError(
            f"expected {expected}, got {type(raw).__name__} {raw!r}", file=source, key=key
        )

    optional = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) and len(optional) == 1:
        hint = optional[0]  # TOML has no null: a value given is the other type
    if hint is bool:
        if not isinstance(raw, bool):
            raise wrong("true or false")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong("an integer")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise wrong("a number")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise wrong("a string")
        return raw
    if hint == float | str:  # a number or a named method (models.cervix_threshold)
        if isinstance(raw, str):
            return raw
        return _coerce(raw, float, key, source)
    if hint is Path:
        if not isinstance(raw, str) or not raw:
            raise wrong("a path (a non-empty string)")
        return Path(raw).expanduser()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = ", ".join(repr(m.value) for m in hint)
        if not isinstance(raw, str):
            raise wrong(f"one of {allowed}")
        try:
            return hint(raw)
        except ValueError:
            raise wrong(f"one of {allowed}") from None
    if typing.get_origin(hint) is tuple or isinstance(hint, types.GenericAlias):
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise wrong("a list of strings")
        return tuple(raw)
    raise ConfigError(f"unsupported type {hint!r}", file=source, key=key)  # pragma: no cover


_POSITIVE = {
    "watch.settle_seconds": 0.0,
    "watch.rescan_seconds": 1.0,
    "batch.size": 1,
    "batch.max_wait_ms": 0,
    "batch.max_attempts": 1,
    "batch.lease_seconds": 1.0,
    "batch.stall_seconds": 1.0,
    "batch.read_workers": 0,
    "batch.write_workers": 0,
    "models.simulate_device_ms": 0.0,
    "output.overlay_max_side": 0,
    "limits.max_file_mb": 0.001,
    "limits.max_pixels": 1,
    "limits.max_frames": 1,
    "limits.min_side": 1,
    "limits.max_total_pixels": 1,
    "limits.min_free_mb": 0.0,
    "dicom.max_associations": 1,
    "dicom.max_association_mb": 0.001,
    "dicom.forward_retries": 0,
    "dicom.forward_backoff_seconds": 0.0,
    "models.cervix_input_size": 0,
    "models.lesion_input_size": 0,
    "retention.outputs_days": 0,
    "retention.rows_days": 0,
}
_UNIT_INTERVAL = {
    "models.cervix_threshold",
    "models.lesion_threshold",
    "models.margin",
    "models.min_cervix_fraction",
    "models.min_agreement_dice",
    "report.lesion_positive_threshold",
}


def _check_threshold_name(value: str, key: str, source: str) -> None:
    if value != OTSU:
        raise ConfigError(
            f'expected a number between 0 and 1 or "{OTSU}", got {value!r}', file=source, key=key
        )


def _check_model_sizes(section: Any, source: str) -> None:
    for key in ("cervix_input_size", "lesion_input_size"):
        if getattr(section, key) % 16:
            raise ConfigError(
                "must be 0 (the seed's size) or a multiple of 16 (the UNet's four poolings)",
                file=source,
                key=f"models.{key}",
            )


def _check_peers(peers: tuple[str, ...], source: str) -> None:
    for peer in peers:
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(
                f"{peer!r} is not an IP address or network (e.g. 10.1.2.0/24)",
                file=source,
                key="dicom.allowed_peers",
            ) from None


def _check_ranges(section: Any, name: str, source: str) -> None:
    for field in dataclasses.fields(section):
        key = f"{name}.{field.name}"
        value = getattr(section, field.name)
        if key in _POSITIVE and value < _POSITIVE[key]:
            raise ConfigError(f"must be at least {_POSITIVE[key]}", file=source, key=key)
        if isinstance(value, str) and key == "models.cervix_threshold":
            _check_threshold_name(value, key, source)
            continue
        if key in _UNIT_INTERVAL and not 0.0 <= value <= 1.0:
            raise ConfigError("must lie between 0 and 1", file=source, key=key)
    if name == "output" and not 1 <= section.jpeg_quality <= 100:
        raise ConfigError("must lie between 1 and 100", file=source, key="output.jpeg_quality")
    if name == "models":
        _check_model_sizes(section, source)
    if name == "dicom":
        _check_peers(section.allowed_peers, source)
    if name == "logging" and section.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            "must be one of debug, info, warning, error", file=source, key="logging.level"
        )


def _accept_classes(names: tuple[str, ...], key: str, source: str) -> tuple[str, ...]:
    """The UIDs of ``[dicom] accept_classes`` (UIDs, or keywords of DICOM PS3.6 such as
    ``VLPhotographicImageStorage``), in order, without repeats; an unknown name or an empty
    list is an error naming the key."""
    if not names:
        raise ConfigError(
            "must name at least one SOP class (DICOM inputs of every other class are rejected)",
            file=source,
            key=key,
        )
    # pydicom's table of PS3.6 UIDs, imported only when the key is set: a start-up of
    # `report` does not pay for pydicom.
    from pydicom._uid_dict import UID_dictionary

    by_keyword = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[1] == "SOP Class"}
    resolved: list[str] = []
    for name in names:
        text = name.strip()
        uid = by_keyword.get(text) or (text if _UID.fullmatch(text) else None)
        if uid is None:
            raise ConfigError(
                f"{name!r} is neither a SOP class UID nor a SOP class keyword",
                file=source,
                key=key,
            )
        if uid not in resolved:
            resolved.append(uid)
    return tuple(resolved)


_UID = re.compile(r"[12](\.(0|[1-9][0-9]*))+")  # PS3.5 9.1, root 1 or 2 (ISO, joint)


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _absolute_model_ref(ref: str, base: Path) -> str:
    if ref.startswith("builtin:"):
        return ref
    return str(_absolute(Path(ref).expanduser(), base))


def _absolute_sqlite_url(url: str, base: Path) -> str:
    """``sqlite:///relative.db`` → an absolute file URL; other URLs pass unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith("sqlite:////"):
        return url
    rest = url[len(prefix) :]
    if not rest or rest.startswith(":memory:"):
        return url
    return prefix + str(_absolute(Path(rest), base))


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
