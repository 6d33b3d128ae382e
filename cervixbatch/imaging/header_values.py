"""Header values as the standard allows them, checked where they are read.

A DICOM file's identifiers are kept on its input's row, in columns as wide as the standard
allows (a UID: 64 characters of digits and dots). Real exports break it: a vendor's
private UID root of 80 characters, a PACS that pads with NULs. Such a value is never
stored, logged or copied into an output: :func:`checked_uid` says whether it is one, the
row gets NULL, and the input records which field was invalid, never its value. Descriptive
strings lose NULs and control characters and are cut to their width (:func:`clean_text`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydicom.dataelem import RawDataElement

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["CS_CHARS", "UID_CHARS", "checked_uid", "clean_text", "raw_uid", "uid_is_valid"]

UID_CHARS = 64  # PS3.5 table 6.2-1: a UI value holds at most 64 characters
CS_CHARS = 16  # a Code String, such as Modality
# Components of digits separated by single dots: no empty component, nothing else.
# Leading zeros within a component break PS3.5 9.1 too but fit every column and every
# toolkit, so they are not refused here.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
# C0 and C1 control characters and DEL; a NUL is one of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def uid_is_valid(value: str) -> bool:
    """Whether ``value`` is a UID as the standard writes it: digits and dots, no empty
    component, 64 characters at most."""
    return len(value) <= UID_CHARS and _UID.fullmatch(value) is not None


def raw_uid(ds: Dataset, keyword: str) -> tuple[str | None, bool]:
    """``checked_uid`` of the element as the file holds it: read from its bytes, so that
    pydicom's own validation (whose warnings quote the value) never sees it."""
    try:
        element = ds.get_item(keyword)
        if element is None:
            return None, True
        value = element.value
        text: str | None
        if isinstance(element, RawDataElement) or isinstance(value, bytes):
            text = value.decode("latin-1") if isinstance(value, bytes) else None
        else:
            text = None if value is None else str(value)
    except Exception:  # noqa: BLE001 - a malformed element: as good as no UID at all
        return None, False
    return checked_uid(text)


def checked_uid(value: str | None) -> tuple[str | None, bool]:
    """``(uid, valid)`` of a UID value as read: padding (spaces, NULs) at its ends is
    dropped; a value that is still not a UID gives ``(None, False)``; none at all gives
    ``(None, True)``."""
    if value is None:
        return None, True
    uid = value.strip(" \x00")
    if not uid:
        return None, True
    return (uid, True) if uid_is_valid(uid) else (None, False)


def clean_text(value: str | None, width: int) -> str | None:
    """``value`` without control characters (NULs among them) and surrounding spaces, cut
    to ``width`` characters; None when nothing is left."""
    if value is None:
        return None
    cleaned = _CONTROL.sub("", value).strip()[:width].strip()
    return cleaned or None
