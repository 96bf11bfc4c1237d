"""gRPC outcomes → WebSocket close codes and HTTP answers: the bridge's one translation table.

WebSocket (docs/PROTOCOL.md §5.6), for a ``Connect`` stream that ends:

=====================================  ==================================================
engine status                          browser sees
=====================================  ==================================================
UNAUTHENTICATED ``token_expired``      close 4003 ``token_expired`` (not refreshed in time)
UNAUTHENTICATED, PERMISSION_DENIED     ``error`` ``unauthorized``, then close 1008
INVALID_ARGUMENT before the greeting   ``error`` ``invalid_message``, then close 1008
                                       (bad ``since``/``types``: retrying cannot help)
RESOURCE_EXHAUSTED                     close 1013 (slow client; reconnect later)
ABORTED                                close 4001 (operator disconnect; wait before
                                       reconnecting)
UNAVAILABLE after the greeting         close 1001 (engine shutting down)
UNAVAILABLE before the greeting        close 1011 "engine unavailable" (engine
                                       unreachable or refusing sessions)
anything else                          close 1011
OK                                     close 1000
=====================================  ==================================================

The bridge itself closes with 1001 when it shuts down, 1003 for binary frames and
1009 for frames over ``--max-message-bytes`` (``bridge.wsguard``: 1002 and 1007 for
frames that break RFC 6455).

HTTP (docs/PROTOCOL.md §6.1): see ``HTTP_STATUS``; errors answer
``{"error": {"code", "message", "field"?}}`` with ``field`` from the engine's
``tidings-error-field`` trailer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import grpc

from bridge.jsonwire import error_frame
from bridge.upstream import ERROR_CODE_KEY, ERROR_FIELD_KEY, StreamEnded, trailer


class CloseCode(IntEnum):
    """The WebSocket close codes the bridge uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    DISCONNECTED = 4001
    TOKEN_EXPIRED = 4003


@dataclass(frozen=True, slots=True)
class Ending:
    """How a WebSocket ends: an optional last ``error`` frame, then a close."""

    code: CloseCode
    reason: str = ""
    error_frame: str | None = None
    error_code: str | None = None


_AUTH = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def ending_for(ended: StreamEnded | None) -> Ending:
    """How to close a browser socket whose engine stream ended like ``ended`` (None: OK)."""
    if ended is None:
        return Ending(CloseCode.NORMAL)
    status = ended.status
    if status is grpc.StatusCode.UNAUTHENTICATED and ended.error_code == "token_expired":
        return Ending(CloseCode.TOKEN_EXPIRED, "token_expired")
    if status in _AUTH:
        message = ended.details or "not authorized"
        return Ending(
            CloseCode.POLICY_VIOLATION,
            "unauthorized",
            error_frame("unauthorized", message),
            "unauthorized",
        )
    if status is grpc.StatusCode.INVALID_ARGUMENT and not ended.established:
        return Ending(
            CloseCode.POLICY_VIOLATION,
            "invalid connect parameters",
            error_frame("invalid_message", ended.details),
            "invalid_message",
        )
    if status is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Ending(CloseCode.TRY_AGAIN_LATER, "too slow")
    if status is grpc.StatusCode.ABORTED:
        return Ending(CloseCode.DISCONNECTED, "disconnected by an operator")
    if status is grpc.StatusCode.UNAVAILABLE:
        if ended.established:
            return Ending(CloseCode.GOING_AWAY, "server shutting down")
        return Ending(CloseCode.INTERNAL_ERROR, "engine unavailable")
    return Ending(CloseCode.INTERNAL_ERROR, "internal error")


# --- HTTP ------------------------------------------------------------------------------

HTTP_STATUS: Final[dict[grpc.StatusCode, tuple[int, str]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (422, "invalid_request"),
    grpc.StatusCode.OUT_OF_RANGE: (422, "invalid_request"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limited"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "unavailable"),
    grpc.StatusCode.CANCELLED: (503, "unavailable"),
}


#: Codes for the HTTP errors the web framework raises itself (unknown routes and methods,
#: oversized bodies); any other status falls back to its reason phrase in snake case,
#: and every 5xx answers ``internal_error`` (see ``bridge.app``).
HTTP_ERROR_CODES: Final[dict[int, str]] = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def http_error_code(status: int, name: str | None) -> str:
    """The §6 error code for an HTTP error of ``status`` the framework raised."""
    if status >= 500:
        return "internal_error"
    return HTTP_ERROR_CODES.get(status) or (name or "error").lower().replace(" ", "_")


#: gRPC request fields whose REST body name differs (``tidings-error-field`` → ``field``).
REST_FIELD_NAMES: Final[dict[str, str]] = {"data_json": "data"}


class ApiError(Exception):
    """An HTTP error answer in the §6 shape."""

    #: Whether the engine gave this answer (so it has judged the caller's credentials).
    from_engine = False

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @property
    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}

    @classmethod
    def invalid(cls, field: str | None, message: str) -> ApiError:
        """422 for a bad body or query, naming the field at fault."""
        return cls(422, "invalid_request", message, field)

    @classmethod
    def not_found(cls, message: str = "not found") -> ApiError:
        return cls(404, "not_found", message)

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> ApiError:
        """The answer for a failed engine call."""
        status, code = HTTP_STATUS.get(error.code(), (500, "internal_error"))
        if trailer(error, ERROR_CODE_KEY) is None and status >= 500:
            # Not the engine's answer: the channel's (unreachable, timed out).
            message = "the notification engine is unavailable"
        else:
            message = error.details() or code.replace("_", " ")
        field = trailer(error, ERROR_FIELD_KEY)
        if field in REST_FIELD_NAMES:
            rest_name = REST_FIELD_NAMES[field]
            message = message.replace(f"{field}:", f"{rest_name}:", 1)
            field = rest_name
        answer = cls(status, code, message, field)
        answer.from_engine = True
        return answer
