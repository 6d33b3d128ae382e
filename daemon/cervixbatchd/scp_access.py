"""Who may send to the Storage SCP: calling AE titles and peer addresses.

Secure by default: with ``allowed_callers = []`` nobody may send (the SCP still answers,
and rejects every association, saying why in the log); ``["*"]`` admits any caller. Peer
addresses are an optional second fence (``allowed_peers``: addresses or networks; empty:
any address), since AE titles are only names a peer says it has.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from cervixbatch.config import DicomConfig

__all__ = ["ANY_CALLER", "AccessPolicy"]

ANY_CALLER = "*"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The callers and addresses an association may come from."""

    callers: frozenset[str]
    any_caller: bool
    networks: tuple[Network, ...]

    @classmethod
    def from_config(cls, dicom: DicomConfig) -> AccessPolicy:
        """The policy ``[dicom]`` describes (its addresses were checked by the config)."""
        titles = {title.strip() for title in dicom.allowed_callers}
        return cls(
            callers=frozenset(titles - {ANY_CALLER}),
            any_caller=ANY_CALLER in titles,
            networks=tuple(ipaddress.ip_network(p, strict=False) for p in dicom.allowed_peers),
        )

    def refusal(self, calling_ae: str, peer: str) -> str | None:
        """Why an association from ``calling_ae`` at ``peer`` is refused; None: admitted."""
        if self.networks and not self._peer_allowed(peer):
            return "peer_not_allowed"
        if not self.any_caller and calling_ae.strip() not in self.callers:
            return "calling_ae_not_allowed"
        return None

    def describe(self) -> dict[str, Any]:
        """The policy for the start-up log event."""
        callers: Any = "any" if self.any_caller else sorted(self.callers) or "nobody"
        peers: Any = [str(n) for n in self.networks] or "any"
        return {"allowed_callers": callers, "allowed_peers": peers}

    def _peer_allowed(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers so
        return any(address in network for network in self.networks)
