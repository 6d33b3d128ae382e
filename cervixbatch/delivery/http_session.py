"""The HTTP session every DICOMweb request goes through: credentials from a file, TLS checked.

``[dicomweb] credentials_file`` names a file holding either ``user:password`` (HTTP basic
authentication) or a token (sent as ``Authorization: Bearer <token>``); the secret is never
in the configuration itself, never logged, and a file that cannot be read is a clear error.
TLS certificates are verified unless ``tls_verify = false``, against ``ca_file`` when set.
"""

from __future__ import annotations

from pathlib import Path

import requests

from cervixbatch.config import DicomWebConfig
from cervixbatch.errors import ConfigError

__all__ = ["dicomweb_session", "read_credentials"]

MAX_CREDENTIALS_BYTES = 64 * 1024


def read_credentials(path: Path) -> tuple[str, str] | str:
    """``(user, password)`` for a file holding ``user:password``, else the token it holds.

    Raises:
        ConfigError: The file is missing, unreadable, empty or too large (the message
            names the key and the file, never its content).

    """
    key = "dicomweb.credentials_file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror or exc})", key=key) from None
    if len(data) > MAX_CREDENTIALS_BYTES:
        raise ConfigError("is too large to hold a token or user:password", key=key)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", key=key) from None
    if not text or "\n" in text:
        raise ConfigError("must hold one line: a token, or user:password", key=key)
    user, colon, password = text.partition(":")
    if colon and user and " " not in user:
        return user, password
    return text.removeprefix("Bearer ").strip()


def dicomweb_session(settings: DicomWebConfig) -> requests.Session:
    """A session with the configured credentials and TLS verification."""
    session = requests.Session()
    session.verify = settings.ca_file or settings.tls_verify
    if settings.credentials_file:
        credentials = read_credentials(Path(settings.credentials_file))
        if isinstance(credentials, tuple):
            session.auth = credentials
        else:
            session.headers["Authorization"] = f"Bearer {credentials}"
    return session
