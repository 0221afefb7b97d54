"""Which hosts count as this machine: traffic goes nowhere else unless the user names the host."""

from __future__ import annotations

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def host_of(address: str) -> str:
    """The host of a gRPC HOST:PORT ([V6]:PORT too)."""
    return address.rsplit(":", 1)[0].strip("[]")
