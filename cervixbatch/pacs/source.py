"""A DICOMweb PACS as a source of inputs: find by QIDO-RS, fetch by WADO-RS, into the inbox.

:meth:`DicomWebSource.pull` asks the PACS (QIDO-RS, ``<qido_url>/instances``) for the
instances of a range of study dates, keeps those of the wanted modalities and of the
accepted SOP classes (``[dicom] accept_classes``) that were never fetched before (table
``pacs_instances``), fetches each (WADO-RS) and writes it to
``<inbox>/dicomweb/<uuid4>.dcm`` atomically, like the Storage SCP does. Our own overlay SC
(Manufacturer ``cervixbatch``), sent back into the study, is never pulled. From there the
watcher (or ``cervixbatch process``) takes it like any dropped file: bytes hashed, the same
rules; identical bytes fetched again would be the same input anyway.

A PACS that does not answer, answers an HTTP error, or answers something that is not JSON
raises :class:`PacsUnavailable`; what was fetched until then stays fetched, so the next
poll or the next run of the backfill goes on from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import requests
import structlog

from cervixbatch.config import Config
from cervixbatch.delivery.http_session import dicomweb_session
from cervixbatch.errors import CervixbatchError, ConfigError
from cervixbatch.outputs.atomic import TEMP_PREFIX, sweep_temp_files, write_atomic
from cervixbatch.store.db import Database
from cervixbatch.store.pacs import fetched_among, record_fetched

__all__ = ["INBOX_SUBFOLDER", "DicomWebSource", "PacsUnavailable", "PullResult", "RemoteInstance"]

log = structlog.get_logger(__name__)

INBOX_SUBFOLDER = "dicomweb"
# Study, Series and SOP Instance UID, SOP Class UID, Modality, Manufacturer.
_FIELDS = ("0020000D", "0020000E", "00080018", "00080016", "00080060", "00080070")
OUR_MANUFACTURER = "cervixbatch"  # our own SC, sent back to the PACS, is never pulled


class PacsUnavailable(CervixbatchError):
    """The PACS did not answer usefully; ``kind`` says how (``unreachable``, ``http``,
    ``not_json``) for a log line, the message says it for a person."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteInstance:
    """One instance the PACS holds."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    manufacturer: str = ""


@dataclasses.dataclass(slots=True)
class PullResult:
    """What one :meth:`DicomWebSource.pull` found and did."""

    found: int = 0  # instances of the wanted modalities and classes in the range
    new: int = 0  # of those, never fetched before
    fetched: int = 0  # fetched now (0 in a dry run)


class DicomWebSource:
    """QIDO-RS and WADO-RS against ``[dicomweb] qido_url`` / ``wado_url``."""

    def __init__(self, config: Config, db: Database) -> None:
        try:
            from dicomweb_client.api import DICOMwebClient  # the dicomweb extra
        except ImportError:
            raise ConfigError(
                "needs dicomweb-client: pip install 'cervixbatch[dicomweb]'", key="dicomweb"
            ) from None

        settings = config.dicomweb
        self.db = db
        self.folder = config.paths.inbox / INBOX_SUBFOLDER
        # A crash mid-fetch leaves a hidden temp file (the watcher ignores it): those of
        # dead writers go, as the Storage SCP's do.
        sweep_temp_files(self.folder.glob(TEMP_PREFIX + "*"))
        self.accept = frozenset(config.dicom.accept_classes)
        self._session = dicomweb_session(settings)
        timeout = settings.timeout_seconds
        self._qido = DICOMwebClient(settings.qido_url, session=self._session, timeout=timeout)
        wado = settings.wado_url or settings.qido_url
        self._wado = DICOMwebClient(wado, session=self._session, timeout=timeout)
        for client in (self._qido, self._wado):
            client.set_http_retry_params(retry=False)  # a failed poll is simply retried later

    def close(self) -> None:
        """Closes the HTTP session."""
        self._session.close()

    def query(
        self, since: dt.date, until: dt.date, modalities: Sequence[str]
    ) -> list[RemoteInstance]:
        """The instances of studies dated ``since`` to ``until`` (inclusive) of the wanted
        modalities and accepted SOP classes."""
        span = f"{since:%Y%m%d}-{until:%Y%m%d}"
        answer = self._call(
            lambda: self._qido.search_for_instances(
                search_filters={"StudyDate": span}, fields=list(_FIELDS), get_remaining=True
            )
        )
        wanted = {m.upper() for m in modalities}
        found = []
        for item in answer if isinstance(answer, list) else []:
            instance = _instance(item)
            if instance is None or instance.sop_class_uid not in self.accept:
                continue
            if instance.manufacturer == OUR_MANUFACTURER:
                continue  # our overlay SC in the study: a result, not a picture
            if wanted and instance.modality.upper() not in wanted:
                continue
            found.append(instance)
        return found

    def pull(
        self,
        since: dt.date,
        until: dt.date,
        modalities: Sequence[str],
        *,
        dry_run: bool = False,
    ) -> PullResult:
        """Fetches into the inbox what the range holds and was never fetched."""
        instances = self.query(since, until, modalities)
        with self.db.read_session() as session:
            known = fetched_among(session, (i.sop_instance_uid for i in instances))
        new = [i for i in instances if i.sop_instance_uid not in known]
        result = PullResult(found=len(instances), new=len(new))
        if dry_run:
            return result
        for instance in new:
            self.fetch(instance)
            result.fetched += 1
        return result

    def fetch(self, instance: RemoteInstance) -> Path:
        """WADO-RS one instance into the inbox; then note it as fetched."""
        dataset = self._call(
            lambda: self._wado.retrieve_instance(
                instance.study_uid, instance.series_uid, instance.sop_instance_uid
            )
        )
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.dcm"
        write_atomic(path, buffer.getvalue())  # temp + fsync + rename: the watcher sees it whole
        with self.db.session() as session:
            record_fetched(
                session,
                sop_instance_uid=instance.sop_instance_uid,
                study_uid=instance.study_uid,
                series_uid=instance.series_uid,
                file_name=path.name,
            )
        log.info("pacs_instance_fetched", file=path.name, sop_class_uid=instance.sop_class_uid)
        return path

    def _call(self, request: Any) -> Any:
        """Runs one request; every way it can fail becomes :class:`PacsUnavailable`."""
        try:
            return request()
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise PacsUnavailable("http", f"the PACS answered HTTP {code}") from None
        except requests.JSONDecodeError:  # a RequestException too: told apart first
            raise PacsUnavailable("not_json", "the PACS's answer is not JSON") from None
        except requests.RequestException as exc:
            raise PacsUnavailable(
                "unreachable", f"cannot reach the PACS ({type(exc).__name__})"
            ) from None
        except ValueError as exc:  # a JSON (or multipart) body that does not parse
            raise PacsUnavailable(
                "not_json", f"the PACS's answer cannot be read ({type(exc).__name__})"
            ) from None


def _instance(item: Any) -> RemoteInstance | None:
    """A QIDO answer's item, or None when it lacks a UID (nothing to fetch it by)."""
    if not isinstance(item, dict):
        return None

    def value(tag: str) -> str:
        values = (item.get(tag) or {}).get("Value") or [""]
        return str(values[0]).strip()

    study, series, sop, sop_class, modality, manufacturer = (value(tag) for tag in _FIELDS)
    if not (study and series and sop):
        return None
    return RemoteInstance(study, series, sop, sop_class, modality, manufacturer)
