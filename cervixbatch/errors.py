"""The exceptions of cervixbatch.

A leaf module: it imports nothing from the package, so it can never cause an import
cycle. Every error a user can see derives from :class:`CervixbatchError`; the CLI turns
them into one line and an exit status, the daemon logs them.
"""

from __future__ import annotations

import enum

__all__ = [
    "CervixbatchError",
    "ConfigError",
    "DicomOutputSkipped",
    "FailReason",
    "InputRejected",
    "ModelError",
    "OutputError",
    "RejectReason",
    "StoreError",
]


class CervixbatchError(Exception):
    """Base of every error cervixbatch raises on purpose."""


class ConfigError(CervixbatchError):
    """The configuration file is missing, malformed, or has an unknown key or a wrong type."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = file or "configuration"
        prefix = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(prefix + message)


class RejectReason(enum.StrEnum):
    """Why an input was rejected: its own fault, so it is never retried.

    The values are the stable, machine-readable codes stored in the database and shown by
    ``cervixbatch report``.
    """

    EMPTY_FILE = "empty_file"
    TRUNCATED = "truncated"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"
    NO_PIXEL_DATA = "no_pixel_data"
    UNSUPPORTED_DICOM = "unsupported_dicom"
    TOO_LARGE = "too_large"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_FRAMES = "too_many_frames"
    TOO_SMALL = "too_small"
    UNREADABLE = "unreadable"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    OUTSIDE_INBOX = "outside_inbox"
    # The file at the input's path no longer holds the bytes registered for it: nothing is
    # computed from the new bytes for the old input; they are registered as an input of
    # their own.
    CHANGED = "changed"
    # A DICOM object of a kind that is not a colposcopy photo (CT, MR, SEG, ...): never
    # segmented, never given a SEG or SC in its study.
    UNSUPPORTED_SOP_CLASS = "unsupported_sop_class"

    @property
    def final(self) -> bool:
        """True when the reason is what the content *is*, which more bytes cannot change;
        any other (truncated, empty, unreadable, changed...) may be a copy still written."""
        return self in _FINAL_REJECTIONS


_FINAL_REJECTIONS = frozenset(
    {
        RejectReason.UNSUPPORTED_FORMAT,
        RejectReason.UNSUPPORTED_SOP_CLASS,
        RejectReason.NO_PIXEL_DATA,
        RejectReason.UNSUPPORTED_DICOM,
        RejectReason.TOO_LARGE,
        RejectReason.FILE_TOO_LARGE,
        RejectReason.TOO_MANY_FRAMES,
        RejectReason.TOO_SMALL,
    }
)


class FailReason(enum.StrEnum):
    """Why an attempt at an input failed through no fault of the input: retried while
    ``batch.max_attempts`` allows, then ``failed`` with this code."""

    INTERNAL_ERROR = "internal_error"  # reading, pre-processing or the models raised
    OUTPUT_ERROR = "output_error"  # its outputs could not be written (a full disk: retried free)
    WORKER_DIED = "worker_died"  # its worker's lease lapsed mid-attempt; another took it over
    # the database refused its row even alone (the rest of its batch was recorded): never
    # retried, since the same values would be refused again
    UNRECORDABLE = "unrecordable"


class InputRejected(CervixbatchError):
    """An input that cannot be processed because of what it is (never retried)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


class ModelError(CervixbatchError):
    """A model file cannot be loaded or does not have the shape a stage needs."""


class OutputError(CervixbatchError):
    """Outputs could not be written (disk full, I/O error, a path outside the outbox).

    ``transient`` errors (no space, quota, I/O error) are the disk's, not the input's:
    the input goes back to the queue without spending one of its attempts.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class DicomOutputSkipped(CervixbatchError):
    """The DICOM SEG and SC of an input cannot be built from its header (no Study Instance
    UID, an encoding highdicom cannot copy, ...). Not a failure of the input: its masks and
    overlay are the result, and ``reason`` (a short code) says why the DICOM outputs are
    missing. ``detail`` never carries a tag value."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class StoreError(CervixbatchError):
    """The database cannot be opened, migrated, or does not answer."""
