"""Which ``Host`` headers an HTTP endpoint answers: the DNS-rebinding defence.

A page on ``evil.example`` whose name an attacker re-points at 127.0.0.1 can make a browser
send requests to a loopback-bound server, but the browser still sends ``Host: evil.example``.
So an endpoint answers only Host headers naming loopback, a configured name, or an IP address
literal (a browser only sends an IP literal to a page served from that very address, which is
no rebinding; Kubernetes probes and Prometheus scrapes use the pod IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LOOPBACK_NAMES", "HostPolicy"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class HostPolicy:
    """Accepted ``Host`` headers: ``names`` (each ``name`` or ``name:port``; ``name:*`` for
    any port; ``*`` alone accepts every host), loopback names and IP literals."""

    names: frozenset[str]

    @classmethod
    def of(cls, allowed: Iterable[str]) -> HostPolicy:
        """The policy accepting loopback, IP literals and ``allowed`` (blank items ignored)."""
        return cls(frozenset(h.strip().lower() for h in allowed if h and h.strip()))

    def accepts(self, host_header: str | None) -> bool:
        """True when a request with this ``Host`` header may be answered."""
        if "*" in self.names:
            return True
        if not host_header:
            return False
        host = host_header.strip().lower()
        name = _name(host)
        if name is None:
            return False
        if name in LOOPBACK_NAMES or _is_ip_literal(name):
            return True
        return host in self.names or name in self.names or f"{name}:*" in self.names


def _name(host: str) -> str | None:
    """The host name of a Host header (without its port); None when malformed."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return host[: end + 1]
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
