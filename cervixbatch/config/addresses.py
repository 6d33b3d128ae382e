"""Network addresses in the settings, parsed by one set of rules when the config is loaded.

``metrics.listen`` and ``dicom.listen`` are ``host:port``; ``dicom.forward`` is
``AET@host:port``. A host is a name, an IPv4 address or an IPv6 address in brackets
(``[::1]:104``, ``[::]:11112``); it is never implied, so that what a socket is bound to is
always written in the settings.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

__all__ = ["DicomPeer", "SocketAddress", "parse_dicom_peer", "parse_socket_address"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_AE_TITLE_MAX = 16  # PS3.5 AE value representation


class SocketAddress(NamedTuple):
    """Where to listen or connect: host (without brackets) and TCP port."""

    host: str
    port: int


class DicomPeer(NamedTuple):
    """A DICOM application entity to send to: its AE title and address."""

    ae_title: str
    host: str
    port: int


def parse_socket_address(text: str) -> SocketAddress:
    """``"host:port"`` or ``"[v6]:port"``; ValueError saying why."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return SocketAddress(_host(host, text), port)


def parse_dicom_peer(text: str) -> DicomPeer:
    """``"AET@host:port"``; ValueError saying why."""
    ae_title, sep, address = text.strip().partition("@")
    ae_title = ae_title.strip()
    if not sep or not ae_title:
        raise ValueError(f"expected AET@host:port, got {text!r}")
    if len(ae_title) > _AE_TITLE_MAX or "\\" in ae_title or not ae_title.isprintable():
        raise ValueError(f"AE title {ae_title!r} is not 1-16 printable characters without '\\'")
    host, port = parse_socket_address(address)
    return DicomPeer(ae_title, host, port)


def _host(host: str, text: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
    if ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:104, got {text!r}")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host
