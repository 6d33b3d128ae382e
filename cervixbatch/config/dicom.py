"""The settings of the DICOM and PACS side: ``[dicom]``, ``[dicomweb]`` and ``[webhook]``.

Kept apart from :mod:`cervixbatch.config`, which re-exports them, so that each module
stays one readable list of typed, documented defaults.
"""

from __future__ import annotations

import dataclasses

from cervixbatch.config.addresses import (
    DicomPeer,
    SocketAddress,
    parse_dicom_peer,
    parse_socket_address,
)

__all__ = ["DEFAULT_ACCEPT_CLASSES", "DicomConfig", "DicomWebConfig", "WebhookConfig"]

DEFAULT_ACCEPT_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
)
"""The DICOM SOP classes a colposcope writes: ``[dicom] accept_classes`` by default."""


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
    # a connection silent this long, before or within an association, is dropped
    idle_timeout_seconds: float = 30.0
    # what one calling AE title, and one peer address, may send in a sliding hour, over
    # all its associations (0: no limit); past it, transfers are aborted and refused
    caller_mb_per_hour: float = 16384.0
    caller_instances_per_hour: int = 0
    forward: str = ""  # "AET@host:port": C-STORE the SEG and SC there once written
    forward_retries: int = 3  # further attempts after a failed forward
    forward_backoff_seconds: float = 2.0  # wait before retry n: this x 2**(n-1)

    @property
    def listen_address(self) -> SocketAddress | None:
        """``listen`` parsed (checked at load); None when no Storage SCP is wanted."""
        return parse_socket_address(self.listen) if self.listen else None

    @property
    def forward_peer(self) -> DicomPeer | None:
        """``forward`` parsed (checked at load); None when nothing is forwarded."""
        return parse_dicom_peer(self.forward) if self.forward else None


@dataclasses.dataclass(frozen=True, slots=True)
class DicomWebConfig:
    """A PACS or archive spoken to over DICOMweb (HTTP)."""

    stow_url: str = ""  # DICOMweb root results are stored to (STOW-RS: POST <url>/studies)
    qido_url: str = ""  # DICOMweb root polled for new instances (QIDO-RS); empty: no polling
    wado_url: str = ""  # DICOMweb root they are fetched from (WADO-RS); empty: qido_url
    poll_seconds: float = 60.0  # between two QIDO-RS polls
    modalities: tuple[str, ...] = ("XC", "ES", "OT")  # instances of these are pulled
    # a token, or "user:password", read from this file (absolute once loaded), never inline
    credentials_file: str = ""
    tls_verify: bool = True  # check the server's certificate (HTTPS)
    ca_file: str = ""  # CA bundle to check it against; empty: the system's
    retries: int = 3  # further attempts after a failed STOW-RS (never after a 4xx)
    backoff_seconds: float = 2.0  # wait before retry n: this x 2**(n-1)
    timeout_seconds: float = 30.0  # per HTTP request


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookConfig:
    """A signed JSON notice POSTed for every finished input (delivered at least once)."""

    url: str = ""  # empty: no notices
    secret_file: str = ""  # the HMAC-SHA256 key (absolute once loaded); never inline
    include_patient: bool = False  # true: the notice carries the path and patient/study ids
    timeout_seconds: float = 10.0  # per POST
    backoff_seconds: float = 2.0  # wait before retry n: this x 2**(n-1), ...
    max_backoff_seconds: float = 600.0  # ... at most this; a notice is retried until taken
