"""The tables, as SQLAlchemy 2.0 typed models. The schema changes only through migrations."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TextClause,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Disposition",
    "ForwardStatus",
    "Input",
    "InputTally",
    "PacsCursor",
    "PacsInstance",
    "Result",
    "Sighting",
    "Status",
    "UTCDateTime",
    "WebhookNotice",
    "Worker",
    "failed",
    "status_is",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """Now, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL does."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """Aware datetimes in; naive UTC out for SQLite."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(
        self,
        value: dt.datetime | None,
        dialect: Any,  # noqa: ARG002 - SQLAlchemy's signature
    ) -> dt.datetime | None:
        """Always aware UTC back."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Status(enum.StrEnum):
    """Where an input is in its life. Done, rejected and failed are terminal."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for states an input never leaves."""
        return self in {Status.DONE, Status.REJECTED, Status.FAILED}


class Disposition(enum.StrEnum):
    """What became of an input's inbox files after it ended (NULL: they were kept)."""

    ARCHIVED = "archived"
    DELETED = "deleted"


class ForwardStatus(enum.StrEnum):
    """Where a result's DICOM objects are on their way to ``[dicom] forward`` (NULL: not
    forwarded)."""

    PENDING = "pending"  # written, not yet stored by the peer (sent again after a restart)
    SENT = "sent"
    FAILED = "failed"  # every retry failed; forward_detail says why


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


_status = Enum(
    Status,
    name="input_status",
    native_enum=False,
    length=16,
    values_callable=lambda e: [m.value for m in e],
    validate_strings=True,
)


# The live and the failed inputs, written out literally in the partial indexes and in the
# queries meant to use them: PostgreSQL proves a partial index usable only when the
# query's condition implies the index's, and a bound parameter would hide the value.
LIVE_SQL = "status IN ('queued', 'processing')"
QUEUED_SQL = "status = 'queued'"
FAILED_SQL = "status = 'failed'"  # the latest failure, for `status`


def failed() -> TextClause:
    """The condition of :data:`FAILED_SQL`, for the partial index of failed inputs."""
    return text(f"inputs.{FAILED_SQL}")


def status_is(status: Status) -> TextClause:
    """``inputs.status = '<status>'``, the value written out (see :data:`LIVE_SQL`)."""
    return text(f"inputs.status = '{status.value}'")


class Input(Base):
    """One input file, identified by the sha256 of its bytes: the durable queue's row."""

    __tablename__ = "inputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)  # where it was first found
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[Status] = mapped_column(_status, default=Status.QUEUED)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str | None] = mapped_column(String(16))  # photo | dicom, once read
    format: Mapped[str | None] = mapped_column(String(16))
    frame_count: Mapped[int | None] = mapped_column(Integer)
    study_uid: Mapped[str | None] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when it last entered the queue (found, or `reprocess`): the queue's age counts from here
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    processing_ms: Mapped[float | None] = mapped_column(Float)
    disposition: Mapped[str | None] = mapped_column(String(16))  # Disposition; NULL: kept

    results: Mapped[list[Result]] = relationship(
        back_populates="input",
        order_by="(Result.run, Result.frame)",
        cascade="all, delete-orphan",
    )
    sightings: Mapped[list[Sighting]] = relationship(
        back_populates="input", order_by="Sighting.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_inputs_status_id", "status", "id"),
        Index("ix_inputs_created_at", "created_at"),
        Index("ix_inputs_study_uid", "study_uid"),
        Index("ix_inputs_status_processing_ms", "status", "processing_ms"),  # median, slowest
        # claims walk the live inputs in id order, never the finished ones behind them
        Index(
            "ix_inputs_active",
            "id",
            postgresql_where=text(LIVE_SQL),
            sqlite_where=text(LIVE_SQL),
        ),
        Index(  # `status`: how long the oldest queued input has waited
            "ix_inputs_queued_at",
            "queued_at",
            postgresql_where=text(QUEUED_SQL),
            sqlite_where=text(QUEUED_SQL),
        ),
        Index(
            "ix_inputs_failed",
            "finished_at",
            "id",
            postgresql_where=text(FAILED_SQL),
            sqlite_where=text(FAILED_SQL),
        ),
    )


class InputTally(Base):
    """How many inputs are in each status and reason, as deltas a trigger appends on every
    insert, change of status or reason, and delete of an input; summed (and now and then
    folded into one row per status and reason) they give the counts without reading the
    inputs themselves (:mod:`cervixbatch.store.tallies`)."""

    __tablename__ = "input_tallies"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    delta: Mapped[int] = mapped_column(BigInteger)


class Result(Base):
    """What the two stages found in one frame of an input, and where the outputs lie."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_id: Mapped[int] = mapped_column(ForeignKey("inputs.id", ondelete="CASCADE"))
    # 1 for the first processing of an input, 2 for its first `reprocess`, …: earlier runs
    # keep their rows and their files
    run: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    frame: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    cervix_found: Mapped[bool]
    cervix_fraction: Mapped[float] = mapped_column(Float)
    lesion_fraction: Mapped[float] = mapped_column(Float)
    box_x0: Mapped[int | None] = mapped_column(Integer)
    box_y0: Mapped[int | None] = mapped_column(Integer)
    box_x1: Mapped[int | None] = mapped_column(Integer)
    box_y1: Mapped[int | None] = mapped_column(Integer)
    cervix_mask_path: Mapped[str] = mapped_column(Text)
    lesion_mask_path: Mapped[str] = mapped_column(Text)
    overlay_path: Mapped[str] = mapped_column(Text)
    crop_path: Mapped[str | None] = mapped_column(Text)
    dicom_seg_path: Mapped[str | None] = mapped_column(Text)
    dicom_sc_path: Mapped[str | None] = mapped_column(Text)
    dicom_seg_uid: Mapped[str | None] = mapped_column(String(64))
    dicom_sc_uid: Mapped[str | None] = mapped_column(String(64))
    dicom_sr_path: Mapped[str | None] = mapped_column(Text)  # the measurements (TID 1500)
    dicom_sr_uid: Mapped[str | None] = mapped_column(String(64))
    # Why a DICOM input's frame has no SEG/SC although it is done: a reason code
    # (missing_uid, character_set, not_buildable, ...) and a sentence without tag values.
    dicom_skipped: Mapped[str | None] = mapped_column(String(64))
    dicom_skipped_detail: Mapped[str | None] = mapped_column(Text)
    forward_status: Mapped[str | None] = mapped_column(String(16))  # ForwardStatus
    forward_detail: Mapped[str | None] = mapped_column(Text)
    # the same, for [dicomweb] stow_url (STOW-RS), with the HTTP error status it answered
    stow_status: Mapped[str | None] = mapped_column(String(16))  # ForwardStatus
    stow_detail: Mapped[str | None] = mapped_column(Text)
    stow_http_status: Mapped[int | None] = mapped_column(Integer)
    cervix_model: Mapped[str] = mapped_column(String(64))  # sha256 of the model
    lesion_model: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16))
    runtime: Mapped[str] = mapped_column(String(16), server_default="tensorflow")  # or openvino
    stage1_ms: Mapped[float] = mapped_column(Float)
    stage2_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when retention (or `purge`) removed the files above; the paths stay as a record
    outputs_purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    input: Mapped[Input] = relationship(back_populates="results")

    __table_args__ = (
        UniqueConstraint("input_id", "run", "frame", name="uq_results_input_run_frame"),
        # the report's "models in use" groups by these
        Index("ix_results_models", "cervix_model", "lesion_model", "precision"),
        # retention: the oldest results whose files are still there
        Index("ix_results_purge", "outputs_purged_at", "created_at"),
        # "was anything ever reprocessed?": reports skip the latest-run filter if not
        Index("ix_results_run", "run"),
        # `status` counts the deliveries to a PACS per leg and state
        Index("ix_results_forward_status", "forward_status"),
        Index("ix_results_stow_status", "stow_status"),
    )


class Sighting(Base):
    """A place and moment an input's bytes were seen: (path, size, mtime, inode) skips
    rehashing, and is the identity a file must still have to be archived or deleted."""

    __tablename__ = "sightings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_id: Mapped[int] = mapped_column(ForeignKey("inputs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    # 0: not known (seen before inodes were kept, or on a filesystem without them)
    inode: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    input: Mapped[Input] = relationship(back_populates="sightings")

    __table_args__ = (
        # A file replaced at the same path with the same size and mtime (cp -p) is a new
        # inode: it is hashed again, never taken for the file seen before.
        UniqueConstraint(
            "path", "size_bytes", "mtime_ns", "inode", name="uq_sightings_path_size_mtime_inode"
        ),
        Index("ix_sightings_input_id", "input_id"),
    )


class Worker(Base):
    """A running (or stopped, or vanished) worker: the daemon or a `process` run.

    Its id is the lease owner it claims inputs as, so what it holds is a join away.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # daemon | process
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))  # cervixbatch's
    cervix_model: Mapped[str | None] = mapped_column(String(64))
    lesion_model: Mapped[str | None] = mapped_column(String(64))
    precision: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    paused: Mapped[str | None] = mapped_column(Text)  # why it takes no new inputs, if so
    disk_free_mb: Mapped[float | None] = mapped_column(Float)
    inputs_finished: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)  # a reason code or error type
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_workers_heartbeat_at", "heartbeat_at"),)


class WebhookNotice(Base):
    """A JSON notice of a finished input, for ``[webhook] url``: written in the transaction
    that finished the input, deleted never, marked delivered once the receiver took it
    (at least once: a receiver that is down loses nothing, it is retried with backoff)."""

    __tablename__ = "webhook_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_id: Mapped[int] = mapped_column(ForeignKey("inputs.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)  # the exact bytes signed and sent (UTF-8 JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed

    __table_args__ = (
        Index("ix_webhook_notices_due", "delivered_at", "next_attempt_at"),
        Index("ix_webhook_notices_input_id", "input_id"),
    )


class PacsInstance(Base):
    """An instance fetched from a DICOMweb PACS into the inbox (never fetched twice)."""

    __tablename__ = "pacs_instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(64))  # under <inbox>/dicomweb/
    fetched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PacsCursor(Base):
    """How far a QIDO-RS walk has come: the poll's, or one backfill's (by its arguments)."""

    __tablename__ = "pacs_cursors"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(32))  # a date, YYYYMMDD: done up to it
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
