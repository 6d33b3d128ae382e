"""A signed JSON notice per finished input, POSTed to ``[webhook] url``, at least once.

The notice is built and stored (:mod:`cervixbatch.store.notices`) in the transaction that
finishes the input, so a crash cannot lose it; :class:`WebhookSender` POSTs the stored
bytes from a background thread until the receiver answers 2xx, waiting
``backoff x 2**(n-1)`` seconds (at most ``max_backoff_seconds``) before retry ``n``. A
receiver may see a notice twice (a crash between its answer and our record): ``input_id``
and ``run`` let it drop repeats.

The body names the input by id and sha256, its status and reason, the fractions per
frame, the model pair and the output file names relative to the input's output folder;
never a path or patient data, unless ``include_patient = true``. The header
``X-Cervixbatch-Signature: sha256=<hex>`` is the HMAC-SHA256 of the body under the key
read from ``secret_file``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import structlog

from cervixbatch.config import WebhookConfig
from cervixbatch.errors import ConfigError
from cervixbatch.store.db import Database
from cervixbatch.store.notices import due_notices, mark_attempt
from cervixbatch.store.schema import utcnow

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "read_secret", "sign"]

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Cervixbatch-Signature"
POLL_SECONDS = 1.0


def read_secret(path: str) -> bytes:
    """The HMAC key: the file's bytes without surrounding whitespace.

    Raises:
        ConfigError: No file named, or it cannot be read, or it is empty.

    """
    key = "webhook.secret_file"
    if not path:
        raise ConfigError("must name a file holding the signing key", key=key)
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or exc})", file=path, key=key) from None
    if not secret:
        raise ConfigError("is empty", file=path, key=key)
    return secret


def sign(body: bytes, secret: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Sends the stored notices from one background thread; :meth:`deliver_due` is one pass."""

    def __init__(self, settings: WebhookConfig, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._secret = read_secret(settings.secret_file)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Sends in the background until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="cervixbatch-webhook", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stops the thread, then makes one last pass; what is still undelivered stays
        stored and is sent by the next run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.deliver_due()
        except Exception as exc:  # noqa: BLE001 - the notices stay stored for the next run
            log.warning("webhook_pass_failed", error=type(exc).__name__)

    def deliver_due(self) -> int:
        """POSTs every notice that is due once; returns how many were delivered."""
        with self.db.read_session() as session:
            due = due_notices(session, now=utcnow())
        delivered = 0
        for notice in due:
            status, error = self._post(notice.body.encode("utf-8"))
            ok = status is not None and 200 <= status < 300
            wait = min(
                self.settings.max_backoff_seconds,
                self.settings.backoff_seconds * 2**notice.attempts,
            )
            with self.db.session() as session:
                mark_attempt(
                    session,
                    notice.id,
                    delivered=ok,
                    status=status,
                    error=None if ok else error,
                    next_attempt_at=utcnow() + timedelta(seconds=wait),
                )
            delivered += ok
            event = "webhook_delivered" if ok else "webhook_attempt_failed"
            log.info(event, notice_id=notice.id, attempt=notice.attempts + 1, status=status)
        return delivered

    def _post(self, body: bytes) -> tuple[int | None, str | None]:
        request = urllib.request.Request(  # noqa: S310 - the URL is checked to be http(s)
            self.settings.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "cervixbatch",
                SIGNATURE_HEADER: sign(body, self._secret),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_seconds) as answer:  # noqa: S310
                return int(answer.status), None
        except urllib.error.HTTPError as exc:
            return int(exc.code), f"the receiver answered {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return None, f"cannot reach the receiver ({type(exc).__name__})"

    def _loop(self) -> None:
        while True:
            try:
                self.deliver_due()
            except Exception as exc:  # noqa: BLE001 - a database hiccup: the next pass retries
                log.warning("webhook_pass_failed", error=type(exc).__name__)
            if self._stop.wait(POLL_SECONDS):
                return
