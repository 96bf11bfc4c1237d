"""Which browser origins may open a WebSocket (docs/PROTOCOL.md §2.6), against cross-site hijacking.

* An upgrade without an ``Origin`` header is allowed: it does not come from a browser
  page, and a non-browser client could send any Origin it liked anyway.
* With ``--allowed-origins`` set, the Origin must be one of the listed origins
  (``scheme://host[:port]``; ``*`` allows any).
* Without it, the Origin's host must be the request's ``Host`` (and its port too,
  when ``Host`` names one).

Comparisons ignore case and default ports (``http://a`` equals ``http://a:80``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _normalise(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, or None when it is not one (e.g. ``null``)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme, 0)
    return parts.scheme, parts.hostname, port


def _host_port(host_header: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{host_header.strip().lower()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port


class OriginPolicy:
    """Decides whether an upgrade's Origin is acceptable."""

    def __init__(self, allowed: Iterable[str]) -> None:
        listed = [o for o in allowed if o.strip()]
        self.any = "*" in (o.strip() for o in listed)
        self.allowed = frozenset(n for o in listed if (n := _normalise(o)) is not None)
        self.same_host_only = not listed

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` and ``Host`` header may upgrade."""
        if origin is None:
            return True
        if self.any:
            return True
        parsed = _normalise(origin)
        if parsed is None:
            return False
        if not self.same_host_only:
            return parsed in self.allowed
        request_host = _host_port(host) if host else None
        if request_host is None:
            return False
        name, port = request_host
        # Behind a TLS-terminating proxy the Host header often has no port: then the
        # host name decides alone.
        return parsed[1] == name and (port is None or parsed[2] == port)
