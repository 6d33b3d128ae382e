"""The configuration: ``config.toml``'s sections as typed, checked, frozen objects.

Import every public name from here (``from cervixbatch.config import Config``); the
modules inside are the sections (``settings``, ``dicom``), their closed sets of values
(``types``), the checks (``checks``), the address parsers (``addresses``) and the one
reading of a database URL (``database_url``).
"""

from cervixbatch.config.addresses import (
    DicomPeer,
    SocketAddress,
)
from cervixbatch.config.checks import (
    OTSU,
)
from cervixbatch.config.database_url import (
    absolute_sqlite_url,
    is_sqlite_url,
    sqlite_file,
)
from cervixbatch.config.dicom import (
    DEFAULT_ACCEPT_CLASSES,
    DicomConfig,
    DicomWebConfig,
    WebhookConfig,
)
from cervixbatch.config.settings import (
    HIDDEN_KEYS,
    BatchConfig,
    Config,
    DatabaseConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    ModelsConfig,
    OutputConfig,
    PathsConfig,
    ReportConfig,
    RetentionConfig,
    WatchConfig,
    load_config,
    resolve_config_path,
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

__all__ = [
    "DEFAULT_ACCEPT_CLASSES",
    "HIDDEN_KEYS",
    "OTSU",
    "AfterAction",
    "BatchConfig",
    "CervixRegion",
    "ChannelOrder",
    "Config",
    "DatabaseConfig",
    "DicomConfig",
    "DicomPeer",
    "DicomWebConfig",
    "LimitsConfig",
    "LogFormat",
    "LogLevel",
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
    "SocketAddress",
    "WatchConfig",
    "WebhookConfig",
    "absolute_sqlite_url",
    "is_sqlite_url",
    "load_config",
    "resolve_config_path",
    "sqlite_file",
]
