"""A Storage SCP under test, seen from outside, and a bare one standing in for a PACS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from cervixbatchd.scp import StorageSCP
from support.net import free_port


def wait_idle(server: StorageSCP, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_associations == 0


def received(server: StorageSCP) -> list[Path]:
    return sorted(server.folder.iterdir())


class Receiver:
    """A bare pynetdicom Storage SCP standing in for a PACS."""

    def __init__(self, sop_classes: list[str]) -> None:
        self.datasets: list[Dataset] = []
        self.callers: list[str] = []
        self.port = free_port()
        self.ae = AE(ae_title="PACS")
        for sop_class in sop_classes:
            self.ae.add_supported_context(
                sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
            )
        self._lock = threading.Lock()
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        with self._lock:
            self.datasets.append(event.dataset)
            self.callers.append(str(event.assoc.requestor.ae_title))
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()
        self.ae.shutdown()
