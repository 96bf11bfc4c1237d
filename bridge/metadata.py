"""What travels to the engine with a call: the caller's credentials as gRPC metadata,
and the §5 connect parameters as a typed ``ConnectParams`` (docs/PROTOCOL.md §2, §5).

The bridge never looks inside a token: it forwards ``authorization: Bearer <jwt>``
(from ``?token=`` or the ``Authorization`` header) and ``x-tidings-user`` (from
``?user_id=`` or ``X-Tidings-User``), and the engine decides what they are worth —
``x-tidings-user`` only counts in insecure mode. ``?since=`` and ``?types=`` are read
as ``tidings.metadata.params_from_text`` reads them for the engine (a number, a comma
list); the engine checks the rest (type names, the filter's bounds).
"""

from __future__ import annotations

from typing import Protocol

from tidings import metadata as keys
from tidings.v1 import stream_pb2

AUTHORIZATION = keys.AUTHORIZATION
USER = keys.USER

Metadata = tuple[tuple[str, str], ...]


class Lookup(Protocol):
    """Headers or query arguments: anything with ``get(name)``."""

    def get(self, key: str) -> str | None: ...


class BadMetadata(ValueError):
    """A value that cannot travel as gRPC metadata (not printable ASCII).

    ``code`` is the §5 error code to answer with: ``unauthorized`` for credentials,
    ``invalid_message`` for connect parameters.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _sendable(code: str, name: str, value: str) -> str:
    # gRPC refuses non-ASCII text metadata; dropping the value instead would silently
    # change who is calling (insecure mode would fall back to the default user).
    if not value.isascii() or not value.isprintable():
        raise BadMetadata(code, f"{name} must be printable ASCII")
    return value


def _credential(name: str, value: str) -> str:
    return _sendable("unauthorized", name, value)


def http_metadata(headers: Lookup) -> Metadata:
    """Metadata for a REST call: ``Authorization`` and ``X-Tidings-User`` as given."""
    md: list[tuple[str, str]] = []
    if authorization := headers.get("Authorization"):
        md.append((AUTHORIZATION, _credential("Authorization", authorization.strip())))
    if user := headers.get("X-Tidings-User"):
        md.append((USER, _credential("X-Tidings-User", user)))
    return tuple(md)


def ws_metadata(args: Lookup, headers: Lookup) -> Metadata:
    """Credentials for a live session, from the upgrade request's query and headers."""
    md: list[tuple[str, str]] = []
    if token := args.get("token"):
        md.append((AUTHORIZATION, "Bearer " + _credential("token", token)))
    elif authorization := headers.get("Authorization"):
        md.append((AUTHORIZATION, _credential("Authorization", authorization.strip())))
    if user := args.get("user_id") or headers.get("X-Tidings-User"):
        md.append((USER, _credential("user_id", user)))
    return tuple(md)


def ws_params(args: Lookup) -> stream_pb2.ConnectParams:
    """The connect parameters of the upgrade request's query (``since``, ``types``)."""
    try:
        return keys.params_from_text(args.get("since"), args.get("types"))
    except keys.BadParams as exc:
        raise BadMetadata("invalid_message", str(exc)) from None
