"""Range and value checks of the settings, each naming the key it rejects.

Called by :mod:`cervixbatch.config` while it builds each section; kept apart so that the
settings themselves read as one list of typed, documented defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cervixbatch.config.addresses import parse_dicom_peer, parse_socket_address
from cervixbatch.errors import ConfigError

__all__ = ["OTSU", "accept_class_uids", "check_ranges", "coerce"]

OTSU = "otsu"  # cervix_threshold: seed 001's binarisation instead of a fixed threshold

_POSITIVE = {
    "database.outage_seconds": 0.0,
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
    "dicom.idle_timeout_seconds": 0.1,
    "dicom.caller_mb_per_hour": 0.0,
    "dicom.caller_instances_per_hour": 0,
    "dicom.forward_retries": 0,
    "dicom.forward_backoff_seconds": 0.0,
    "dicomweb.retries": 0,
    "dicomweb.backoff_seconds": 0.0,
    "dicomweb.timeout_seconds": 0.1,
    "dicomweb.poll_seconds": 1.0,
    "webhook.timeout_seconds": 0.1,
    "webhook.backoff_seconds": 0.0,
    "webhook.max_backoff_seconds": 0.0,
    "models.cervix_input_size": 0,
    "models.lesion_input_size": 0,
    "retention.outputs_days": 0,
    "retention.rows_days": 0,
}
_URLS = {"dicomweb": ("stow_url", "qido_url", "wado_url"), "webhook": ("url",)}
_UNIT_INTERVAL = {
    "models.cervix_threshold",
    "models.lesion_threshold",
    "models.margin",
    "models.min_cervix_fraction",
    "models.min_lesion_fraction",
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


def check_ranges(section: Any, name: str, source: str) -> None:
    """Check a built section's values against their ranges; a ConfigError names the key."""
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
        _check_address(section.listen, parse_socket_address, f"{name}.listen", source)
        _check_address(section.forward, parse_dicom_peer, f"{name}.forward", source)
    if name == "metrics":
        _check_address(section.listen, parse_socket_address, f"{name}.listen", source)
    _check_urls(section, name, source)


def _check_urls(section: Any, name: str, source: str) -> None:
    """A DICOMweb or webhook URL is http(s), so that a typo stops the start with exit 2."""
    for key in _URLS.get(name, ()):
        url = getattr(section, key)
        if url and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
            message = f"expected an http:// or https:// URL, got {url!r}"
            raise ConfigError(message, file=source, key=f"{name}.{key}")


def _check_address(text: str, parse: Callable[[str], object], key: str, source: str) -> None:
    """An address setting parses now, so that a typo stops the start with exit 2."""
    if not text:
        return  # empty: the feature is off
    try:
        parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc), file=source, key=key) from None


def accept_class_uids(names: tuple[str, ...], key: str, source: str) -> tuple[str, ...]:
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


def coerce(raw: Any, hint: Any, key: str, source: str) -> Any:  # noqa: C901, PLR0911, PLR0912
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
        return coerce(raw, float, key, source)
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
