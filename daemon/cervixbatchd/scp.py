"""An optional DICOM Storage SCP that feeds the inbox: colposcopes and PACS push, we process.

Started by the service when ``[dicom] listen = "host:port"`` is set. Each received instance
is written, as the bytes the peer sent (plus the DICOM file meta), to
``<inbox>/dicom-scp/<uuid4>.dcm``: first under a hidden ``.tmp-`` name (the watcher ignores
hidden files), fsynced, renamed, and the folder fsynced. Only then does the peer hear
"success" (0x0000); any failure to store answers 0xA700 (out of resources), so the sender
keeps its copy and retries. Names never come from the dataset.

What is accepted is what the readers can decode: the visible-light and secondary-capture
image storage classes (see :data:`STORAGE_SOP_CLASSES`) in every transfer syntax for which
pydicom has a decoder installed. Anything else is refused at association time: its
presentation context is rejected (abstract or transfer syntax not supported). Only the
calling AE titles in ``allowed_callers`` are admitted (empty: nobody; ``["*"]``: any), and
only from ``allowed_peers`` when that is set (:mod:`cervixbatchd.scp_access`; rejected
permanently); so many concurrent associations (``max_associations``; rejected
transiently, "local limit exceeded"); and so much data per association
(``max_association_mb``; further instances are answered 0xA700). C-ECHO is answered.

An instance is received into a temporary file as it arrives, never held in memory
(pynetdicom's ``STORE_RECV_CHUNKED_DATASET``, set for the whole process), and its bytes
are watched as they come (:mod:`cervixbatchd.scp_guard`): past ``max_file_mb``, below the
free-space watermark (``limits.min_free_mb``) or past the caller's hourly budget the
association is aborted at once. A caller over its budget is refused its next association
(transiently). A connection that says nothing for ``idle_timeout_seconds`` is dropped,
before association (the A-ASSOCIATE-RQ never came) as within one.

Logs carry the calling AE title, SOP class and SOP instance UID — the dataset itself is
never decoded here, so no patient attribute can reach a log line.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Self, cast

import structlog
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, AllTransferSyntaxes
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer

from cervixbatch.config import Config, SocketAddress
from cervixbatch.errors import CervixbatchError, ConfigError, OutputError
from cervixbatch.outputs.atomic import TEMP_PREFIX, atomic_file, sweep_temp_files
from cervixbatchd.scp_access import AccessPolicy
from cervixbatchd.scp_guard import CallerBudget, ReceiveGuard

__all__ = [
    "INBOX_SUBFOLDER",
    "STATUS_OUT_OF_RESOURCES",
    "STATUS_SUCCESS",
    "STORAGE_SOP_CLASSES",
    "StorageSCP",
    "supported_transfer_syntaxes",
]

log = structlog.get_logger("cervixbatchd.scp")

INBOX_SUBFOLDER = "dicom-scp"
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
VERIFICATION = "1.2.840.10008.1.1"  # C-ECHO
STOP_GRACE_S = 10.0  # how long stop() lets associations in progress finish

# Image storage classes a colposcope or a PACS sends colposcopy pictures as.
STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "VL Microscopic Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}


def supported_transfer_syntaxes() -> list[UID]:
    """Every transfer syntax pydicom can decode here: native, deflated and the compressed
    ones whose plugin is installed (never MPEG video, which the readers cannot decode)."""
    syntaxes = []
    for uid in AllTransferSyntaxes:
        try:
            if get_decoder(uid).is_available:
                syntaxes.append(UID(uid))
        except NotImplementedError:
            continue
    return syntaxes


class StorageSCP:
    """A pynetdicom Storage SCP writing what it receives into ``<inbox>/dicom-scp/``.

    Args:
        config: The settings; ``config.dicom`` gives listen address, AE title, allowed
            callers and maximum associations, ``config.limits`` the largest file accepted.
        inbox: The watched inbox; the SCP writes into its ``dicom-scp`` subfolder.

    """

    def __init__(self, config: Config, inbox: Path) -> None:
        self._dicom = config.dicom
        self._max_bytes = config.read_limits_bytes
        self.folder = inbox / INBOX_SUBFOLDER
        try:  # checked when the settings were loaded; a Config built in code is checked here
            address = self._dicom.listen_address
        except ValueError as exc:
            raise ConfigError(str(exc), key="dicom.listen") from None
        if address is None:
            raise ConfigError("is empty: no address to listen on", key="dicom.listen")
        self.address: SocketAddress = address
        self._access = AccessPolicy.from_config(self._dicom)
        self._max_association_bytes = int(self._dicom.max_association_mb * 1024 * 1024)
        self._stored: dict[int, int] = {}  # bytes stored per association (by its id)
        self._budget = CallerBudget(
            int(self._dicom.caller_mb_per_hour * 1024 * 1024), self._dicom.caller_instances_per_hour
        )
        self._guard = ReceiveGuard(
            max_instance_bytes=self._max_bytes,
            min_free_mb=config.limits.min_free_mb,
            folder=self.folder,
            budget=self._budget,
            keys=_budget_keys,
        )
        self._ae: AE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    @property
    def active_associations(self) -> int:
        """Associations being served now (a rejected one counts until its thread ends)."""
        ae = self._ae
        return len(_acceptors(ae)) if ae is not None else 0

    def start(self) -> None:
        """Bind the port and serve in the background.

        Raises:
            ConfigError: An AE title is invalid.
            CervixbatchError: The address cannot be bound (in use, no permission).

        """
        with self._lock:
            if self._server is not None:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
            try:  # pynetdicom checks AE titles: 1 to 16 characters, no backslash
                ae = AE(ae_title=self._dicom.ae_title)
            except ValueError as exc:
                raise ConfigError(str(exc), key="dicom.ae_title") from None
            ae.maximum_associations = self._dicom.max_associations
            # Silence is not kept waiting: before association (ARTIM) as within one.
            ae.acse_timeout = ae.network_timeout = self._dicom.idle_timeout_seconds
            _config.STORE_RECV_CHUNKED_DATASET = True  # received into a file, not memory
            syntaxes = supported_transfer_syntaxes()
            for sop_class in STORAGE_SOP_CLASSES:
                ae.add_supported_context(sop_class, syntaxes)
            ae.add_supported_context(VERIFICATION)
            handlers: list[Any] = [
                (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_CONN_CLOSE, self._on_closed),
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_C_ECHO, self._on_echo),
                (evt.EVT_REJECTED, self._on_rejected),
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_DATA_RECV, self._guard.on_data),
            ]
            try:
                server = ae.start_server(self.address, block=False, evt_handlers=handlers)
            except OSError as exc:
                raise CervixbatchError(
                    f"the DICOM Storage SCP cannot listen on {self._dicom.listen}: "
                    f"{exc.strerror or exc}"
                ) from exc
            self._ae, self._server = ae, server
            log.info(
                "dicom_scp_started",
                host=self.address[0],
                port=self.address[1],
                ae_title=self._dicom.ae_title,
                **self._access.describe(),
                max_association_mb=self._dicom.max_association_mb,
                sop_classes=len(STORAGE_SOP_CLASSES),
                transfer_syntaxes=len(syntaxes),
            )

    def stop(self) -> None:
        """Stop listening, let associations in progress finish (briefly), then abort them."""
        with self._lock:
            server, ae = self._server, self._ae
            self._server = self._ae = None
        if server is None or ae is None:
            return
        server.shutdown()  # returns once the accept loop has ended; the socket is closed
        deadline = time.monotonic() + STOP_GRACE_S
        for assoc in _acceptors(ae):
            assoc.join(timeout=max(0.0, deadline - time.monotonic()))
        for assoc in _acceptors(ae):
            assoc.abort()
            assoc.join(timeout=2.0)
        ae.shutdown()
        log.info("dicom_scp_stopped")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # Handlers run on pynetdicom's association threads.

    def _on_store(self, event: evt.Event) -> int:
        """Write the instance durably, then answer; never raises (pynetdicom would 0xC211)."""
        request = cast("C_STORE", event.request)
        fields = {
            "calling_ae": _calling_ae(event),
            "sop_class_uid": str(request.AffectedSOPClassUID),
            "sop_instance_uid": str(request.AffectedSOPInstanceUID),
        }
        reserved = 0
        try:
            source = Path(event.dataset_path)  # received whole, into pynetdicom's temp file
            size = source.stat().st_size
            refusal = self._refusal(event.assoc, size)
            if refusal is not None:
                log.warning("dicom_scp_refused", reason=refusal, size=size, **fields)
                return STATUS_OUT_OF_RESOURCES
            reserved = size
            path = self.folder / f"{uuid.uuid4().hex}.dcm"
            store_file(path, source)  # temp + fsync + rename + directory fsync
        except (OutputError, OSError) as exc:
            self._reserve(event.assoc, -reserved)
            # The OS error says it all (disk full, permissions): no traceback needed.
            log.error("dicom_scp_store_failed", error=str(exc), **fields)  # noqa: TRY400
            return STATUS_OUT_OF_RESOURCES
        except Exception as exc:  # the peer must get an answer, not an abort
            self._reserve(event.assoc, -reserved)
            log.exception("dicom_scp_store_failed", error=type(exc).__name__, **fields)
            return STATUS_OUT_OF_RESOURCES
        log.info("dicom_scp_stored", file=path.name, size=size, **fields)
        return STATUS_SUCCESS

    def _refusal(self, assoc: Association, size: int) -> str | None:
        """Why a received instance is not stored (None: it is, and it is counted)."""
        if size > self._max_bytes:
            return "too_large"
        if self._guard.disk_low():
            return "disk_low"
        if self._budget.spend(_budget_keys(assoc), instances=1):
            return "caller_budget"
        if not self._reserve(assoc, size):
            return "association_limit"
        return None

    def _reserve(self, assoc: Association, size: int) -> bool:
        """Counts ``size`` bytes against the association's budget; False when over it."""
        with self._lock:
            used = self._stored.get(id(assoc), 0) + size
            if size > 0 and used > self._max_association_bytes:
                return False
            self._stored[id(assoc)] = used
            return True

    def _on_requested(self, event: evt.Event) -> None:
        """Rejects an association from a caller or an address that is not allowed."""
        request = event.assoc.requestor.primitive  # the title is not copied over yet
        calling = str(request.calling_ae_title or "").strip() if request else ""
        peer = str(event.assoc.requestor.address)
        refusal = self._access.refusal(calling, peer)
        if refusal is None:
            if self._budget.exhausted((f"ae:{calling}", f"peer:{peer}")) is not None:
                # Transient, by the service provider: "local limit exceeded".
                event.assoc.acse.send_reject(0x02, 0x03, 0x02)
                event.assoc.kill()
                log.warning("dicom_scp_rejected", calling_ae=calling, peer=peer, reason="budget")
            return
        # Permanent, by the service user: "calling AE title not recognised" or no reason.
        event.assoc.acse.send_reject(0x01, 0x01, 0x03 if refusal.startswith("calling") else 0x01)
        event.assoc.kill()  # as pynetdicom's own rejections do: the reply is sent first
        log.warning("dicom_scp_rejected", calling_ae=calling, peer=peer, reason=refusal)

    def _on_closed(self, event: evt.Event) -> None:
        with self._lock:
            self._stored.pop(id(event.assoc), None)
        self._guard.forget(event.assoc)

    def _on_echo(self, event: evt.Event) -> int:
        log.info("dicom_scp_echo", calling_ae=_calling_ae(event))
        return STATUS_SUCCESS

    def _on_accepted(self, event: evt.Event) -> None:
        rejected = [
            str(cx.abstract_syntax) for cx in event.assoc.rejected_contexts if cx.abstract_syntax
        ]
        log.info(
            "dicom_scp_association",
            calling_ae=_calling_ae(event),
            peer=event.assoc.requestor.address,
            accepted_contexts=len(event.assoc.accepted_contexts),
            rejected_sop_classes=rejected or None,
        )

    def _on_rejected(self, event: evt.Event) -> None:
        # Callers and addresses are refused in _on_requested; pynetdicom refuses the rest.
        log.warning(
            "dicom_scp_rejected", calling_ae=_calling_ae(event),
            peer=event.assoc.requestor.address, reason="too_many_associations",
        )  # fmt: skip

    def _remove_stale_temp_files(self) -> None:
        """A crash mid-write leaves a hidden temp file; the sender got no success for it.
        Only those of dead writers go: the folder may be another live process's too."""
        sweep_temp_files(self.folder.glob(TEMP_PREFIX + "*"))


def store_file(path: Path, source: Path) -> None:
    """Copies a received file to ``path`` whole and durably, in bounded memory."""
    with atomic_file(path) as out, source.open("rb") as received:
        shutil.copyfileobj(received, out, 1 << 20)


def _budget_keys(assoc: Association) -> tuple[str, ...]:
    """What a caller's budget is kept under: its calling AE title and its address."""
    calling = str(assoc.requestor.ae_title or "").strip()
    return (f"ae:{calling}", f"peer:{assoc.requestor.address}")


def _acceptors(ae: AE) -> list[Association]:
    return [assoc for assoc in ae.active_associations if assoc.is_acceptor]


def _calling_ae(event: evt.Event) -> str:
    return str(event.assoc.requestor.ae_title or "").strip()
