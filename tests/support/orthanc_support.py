"""A real Orthanc PACS for the tests: Debian's ``orthanc`` and ``orthanc-dicomweb``.

:class:`Orthanc` writes a JSON configuration into a temp folder (free loopback ports for
DICOM and HTTP, the DICOMweb plugin, our Storage SCP as the modality ``cervixbatch``, no
authentication, remote access off, storage in the folder), runs ``Orthanc <config>`` as a
subprocess, waits until its REST API answers, and stops it with SIGTERM. It can be
stopped and started again on the same ports and storage (a PACS going down mid-way).

The session fixture ``orthanc`` (conftest.py) starts one for the whole run;
a test that stops it must start it again. Locally the fixture skips, saying why, when
Orthanc is missing; in CI (``CI=true``) it fails instead (.ci/run installs it).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support.net import free_port
from support.tools import require_executable, tool_missing

__all__ = ["Orthanc", "orthanc_in", "running_orthanc"]

INSTALL = "apt-get install orthanc orthanc-dicomweb"
MODALITY = "cervixbatch"  # our Storage SCP, as Orthanc knows it
OUR_AE = "CERVIXBATCH"
ORTHANC_AE = "ORTHANC"
START_TIMEOUT = 60.0
# Where Debian's orthanc-dicomweb puts the plugin (the first is the versionless link).
_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)


def orthanc_executable() -> str:
    """Orthanc's path: Debian installs it in /usr/sbin, often not on a user's PATH."""
    if Path("/usr/sbin/Orthanc").exists():
        return "/usr/sbin/Orthanc"
    return require_executable("Orthanc", install=INSTALL)


def dicomweb_plugin() -> str | None:
    """The DICOMweb plugin's shared library, as the Debian package installed it."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-L", "orthanc-dicomweb"],
            capture_output=True,
            text=True,
            check=False,
        )
        output = done.stdout
    except FileNotFoundError:  # not a Debian system: the usual places only
        output = ""
    listed = [line for line in output.splitlines() if "libOrthancDicomWeb.so" in line]
    for candidate in [*_PLUGIN_CANDIDATES, *sorted(listed)]:
        if Path(candidate).is_file():
            return candidate
    return None


class Orthanc:
    """One Orthanc process on loopback, with its configuration, storage and log in ``folder``."""

    def __init__(
        self, folder: Path, executable: str, plugin: str, users: dict[str, str] | None = None
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.executable = executable
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.scp_port = free_port()  # where the tests run our Storage SCP
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.aet = ORTHANC_AE
        self.log = folder / "orthanc.log"
        self.config = folder / "orthanc.json"
        settings: dict[str, Any] = {
            "Name": "cervixbatch-tests",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "DicomCheckCalledAETitle": False,
            "RemoteAccessAllowed": False,  # HTTP from loopback only ...
            # ... so no password is needed, unless the test names users (basic auth)
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "HttpCompressionEnabled": False,
            "SaveJobs": False,
            "ConcurrentJobs": 2,
            "DicomScuTimeout": 15,
            "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "DicomModalities": {MODALITY: [OUR_AE, "127.0.0.1", self.scp_port]},
        }
        self.config.write_text(json.dumps(settings, indent=2), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None
        # the REST helpers log in as the first user, when there are users
        self.auth = next(iter(users.items())) if users else None

    def start(self) -> None:
        """Runs Orthanc and returns once its REST API answers."""
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"Orthanc exited at start:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"Orthanc did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; killed if it does not exit in 30 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self) -> str:
        """The end of Orthanc's log, for a failure message."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    # REST helpers: each raises for an HTTP error, so a test fails where it went wrong.

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` of the REST API; the decoded JSON."""
        response = requests.get(f"{self.url}{path}", params=params, auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        """POST JSON (or raw bytes) to ``path``; the decoded JSON."""
        if isinstance(body, bytes):
            response = requests.post(f"{self.url}{path}", data=body, auth=self.auth, timeout=60)
        else:
            response = requests.post(f"{self.url}{path}", json=body, auth=self.auth, timeout=120)
        response.raise_for_status()
        return response.json()

    def upload(self, path: Path) -> dict[str, Any]:
        """Stores a DICOM file in Orthanc (REST POST /instances)."""
        return dict(self.post("/instances", path.read_bytes()))

    def study_id(self, study_uid: str) -> str | None:
        """Orthanc's identifier of the study with this Study Instance UID, if it holds it."""
        found = self.post("/tools/lookup", study_uid.encode())
        ids = [item["ID"] for item in found if item.get("Type") == "Study"]
        return ids[0] if ids else None

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file of one instance."""
        response = requests.get(
            f"{self.url}/instances/{instance_id}/file", auth=self.auth, timeout=30
        )
        response.raise_for_status()
        return response.content

    def qido(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """A QIDO-RS query (``path`` under the DICOMweb root), as DICOM JSON."""
        response = requests.get(
            f"{self.dicomweb}{path}",
            params=params,
            headers={"Accept": "application/dicom+json"},
            auth=self.auth,
            timeout=30,
        )
        response.raise_for_status()
        return list(response.json()) if response.content else []

    def clear(self) -> None:
        """Deletes every patient (and so everything) Orthanc holds."""
        for patient in self.get("/patients"):
            requests.delete(
                f"{self.url}/patients/{patient}", auth=self.auth, timeout=30
            ).raise_for_status()


def orthanc_in(folder: Path, users: dict[str, str] | None = None) -> Orthanc:
    """An Orthanc configured in ``folder``, not started (skips or fails when missing)."""
    executable = orthanc_executable()
    plugin = dicomweb_plugin()
    if plugin is None:
        tool_missing(f"Orthanc's DICOMweb plugin is not installed ({INSTALL})")
    return Orthanc(folder, executable, plugin, users)


def running_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Runs one Orthanc until the generator is closed (skips locally, fails in CI, when
    Orthanc or its DICOMweb plugin is missing): the body of conftest's ``orthanc``."""
    server = orthanc_in(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
