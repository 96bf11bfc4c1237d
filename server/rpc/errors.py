"""Engine errors → gRPC status codes, with the machine-readable code in trailing metadata.

Trailing metadata ``tidings-error-code`` carries the docs/PROTOCOL.md §5.5 code and
``tidings-error-field`` the offending field, so that the bridge can answer HTTP and
WebSocket clients exactly without parsing status details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError
from tidings import metadata as keys

from server.engine.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    TidingsError,
    Unauthenticated,
    Unavailable,
)

ERROR_CODE_KEY = keys.ERROR_CODE
ERROR_FIELD_KEY = keys.ERROR_FIELD

_STATUS: dict[type[TidingsError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: TidingsError) -> grpc.StatusCode:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: TidingsError) -> NoReturn:
    """End the call with the status and metadata that stand for ``exc``."""
    trailers: list[tuple[str, str]] = [(ERROR_CODE_KEY, exc.code)]
    if isinstance(exc, InvalidArgument):
        trailers.append((ERROR_FIELD_KEY, exc.field))
    await context.abort(status_for(exc), exc.message, trailing_metadata=tuple(trailers))
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


class _Message(Protocol):
    DESCRIPTOR: Any

    @classmethod
    def FromString(cls, data: bytes) -> Any: ...


M = TypeVar("M", bound=_Message)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a request deserializer hands on for bytes that are not a valid message.

    grpc.aio answers a deserializer that raises with UNKNOWN and an ERROR traceback
    (and on a stream, ends the reading side without telling the handler); handlers
    get this instead and answer ``error()``: INVALID_ARGUMENT.
    """

    message_type: str
    reason: str

    def error(self) -> InvalidArgument:
        return InvalidArgument("request", f"not a valid {self.message_type}: {self.reason}")


def decoder(message: type[M]) -> Callable[[bytes], M | Undecodable]:
    """A request deserializer for ``message`` that returns ``Undecodable`` instead of raising."""
    name = message.DESCRIPTOR.full_name

    def decode(data: bytes) -> M | Undecodable:
        try:
            return message.FromString(data)  # type: ignore[no-any-return]
        except DecodeError as exc:
            return Undecodable(name, str(exc).rsplit(": ", 1)[-1] or "corrupt wire format")

    return decode
