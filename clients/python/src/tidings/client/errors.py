"""The SDK's exceptions: one tree, each saying whose fault it was and what to do next.

``TidingsError``
├── ``RpcError``              a call failed with a gRPC status
│   ├── ``AuthError``         the server refused the caller; retrying will not help
│   │   ├── ``AuthenticationError``    UNAUTHENTICATED: missing, expired or invalid token
│   │   └── ``PermissionDeniedError``  PERMISSION_DENIED: e.g. the admin role is needed
│   ├── ``InvalidArgumentError``       the request was malformed (``field`` names the culprit)
│   ├── ``NotFoundError``              no such notification (or it is someone else's)
│   └── ``UnavailableError``           the server could not be reached (after any retries)
├── ``CommandError``          the live session refused a command (``code``: PROTOCOL.md §5.5)
├── ``ReconnectGaveUp``       the Subscriber used up its reconnect attempts
└── ``ClosedError``           the Subscriber or Publisher was closed
"""

from __future__ import annotations

import grpc

from tidings import metadata as keys

#: Trailing metadata keys with the docs/PROTOCOL.md §5.5 error code and the offending field.
ERROR_CODE_KEY = keys.ERROR_CODE
ERROR_FIELD_KEY = keys.ERROR_FIELD


class TidingsError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class RpcError(TidingsError):
    """A gRPC call ended with a non-OK status."""

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str,
        *,
        error_code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(f"{status.name}: {details}" if details else status.name)
        self.status = status
        self.details = details
        #: The machine-readable code (docs/PROTOCOL.md §5.5, e.g. ``not_found``), when sent.
        self.error_code = error_code
        #: The request field at fault, for invalid arguments.
        self.field = field


class AuthError(RpcError):
    """The server refused the caller's identity or rights. Fix the credentials; do not retry."""


class AuthenticationError(AuthError):
    """UNAUTHENTICATED: the token is missing, expired or invalid."""


class PermissionDeniedError(AuthError):
    """PERMISSION_DENIED: the caller may not do this (e.g. the admin role is needed)."""


class InvalidArgumentError(RpcError):
    """INVALID_ARGUMENT: the request was malformed; ``field`` names the culprit."""


class NotFoundError(RpcError):
    """NOT_FOUND: no such notification among the caller's own."""


class UnavailableError(RpcError):
    """UNAVAILABLE: the server could not be reached, even after the allowed retries."""


class CommandError(TidingsError):
    """The live session answered a command with an ``error`` message (it stays open)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        #: ``not_found``, ``invalid_message``, ``rate_limited``, ``internal_error``, …
        self.code = code
        self.message = message


class ReconnectGaveUp(TidingsError):
    """The Subscriber tried ``attempts`` times in a row and could not (re)connect."""

    def __init__(self, attempts: int, last_error: str) -> None:
        super().__init__(f"gave up after {attempts} reconnect attempts; last error: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


class ClosedError(TidingsError):
    """The Subscriber or Publisher was closed; make a new one."""


_BY_STATUS: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def error_from_rpc(exc: grpc.aio.AioRpcError) -> RpcError:
    """The SDK exception standing for a failed gRPC call."""
    trailers = {k: v for k, v in exc.trailing_metadata() or () if isinstance(v, str)}
    kind = _BY_STATUS.get(exc.code(), RpcError)
    return kind(
        exc.code(),
        exc.details() or "",
        error_code=trailers.get(ERROR_CODE_KEY),
        field=trailers.get(ERROR_FIELD_KEY),
    )
