"""What comes in over the network, beside the watched inbox: the DICOM Storage SCP
(``[dicom] listen``) and the DICOMweb poll (``[dicomweb] qido_url``). Both only write files
into the inbox; the watcher takes them from there like any dropped file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from cervixbatch.config import Config
from cervixbatch.store.db import Database
from cervixbatchd.scp import StorageSCP

if TYPE_CHECKING:
    from cervixbatch.pacs.walk import PacsPoller

__all__ = ["NetworkIntake"]


class NetworkIntake:
    """Starts and stops the SCP and the poller the configuration asks for."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.scp: StorageSCP | None = None
        self.poller: PacsPoller | None = None  # imported only when polling (dicomweb extra)

    @classmethod
    def started(cls, config: Config, db: Database) -> Self:
        """A started one (nothing runs when neither is configured)."""
        intake = cls(config, db)
        intake.start()
        return intake

    def start(self) -> None:
        """Binds the SCP's port and starts polling (at once, then every poll_seconds)."""
        if self.config.dicom.listen:
            self.scp = StorageSCP(self.config, self.config.paths.inbox)
            self.scp.start()
        web = self.config.dicomweb
        if web.qido_url:
            from cervixbatch.pacs.source import DicomWebSource
            from cervixbatch.pacs.walk import PacsPoller

            try:  # the dicomweb extra missing, credentials unreadable: the SCP goes too
                source = DicomWebSource(self.config, self.db)
            except BaseException:
                self.stop()
                raise
            poller = PacsPoller(source, self.db, web.modalities, web.poll_seconds)
            poller.start()
            self.poller = poller

    def stop(self) -> None:
        """No new instances: the SCP lets associations in progress finish, the poll in
        hand finishes."""
        if self.scp is not None:
            self.scp.stop()
        if self.poller is not None:
            self.poller.stop()
