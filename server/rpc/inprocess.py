"""The servicers' unary calls, made in-process: for a bridge in the engine's own process.

In ``--role all`` the bridge's REST calls would otherwise each be a loopback gRPC call:
serialize, HTTP/2 frames through the kernel, parse, and back. ``InProcessStubs`` hands
the bridge stand-ins for its stubs that call the very same servicer methods with the
very same ``tidings.v1`` messages, and behave as the network stub does:

* the caller's ``metadata`` reaches the servicer as invocation metadata, so
  authentication and authorization are the servicer's, unchanged;
* ``context.abort(code, details, trailing_metadata)`` ends the call with a
  ``grpc.aio.AioRpcError`` carrying that code, details and trailers (the
  ``tidings-error-*`` keys included), so errors translate exactly as over the wire;
* ``timeout`` becomes DEADLINE_EXCEEDED; any other exception UNKNOWN, as grpc.aio's
  server reports an exception escaping a handler.

Messages are not copied: the servicers build fresh responses and never change
requests, and the bridge only reads what it gets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2

if TYPE_CHECKING:
    from tidings.v1 import admin_pb2_grpc, stream_pb2_grpc

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

PEER = "in-process"


class _Aborted(Exception):
    """Raised by ``InProcessContext.abort``; the stub turns it into an ``AioRpcError``."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: Sequence[tuple[str, str | bytes]]
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class InProcessContext:
    """The part of ``grpc.aio.ServicerContext`` the servicers use, for an in-process call."""

    __slots__ = ("_deadline", "_metadata")

    def __init__(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, deadline: float | None
    ) -> None:
        self._metadata = tuple(metadata or ())
        self._deadline = deadline

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def peer(self) -> str:
        return PEER

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> NoReturn:
        raise _Aborted(code, details, tuple(trailing_metadata))


class InProcessUnary(Generic[Req, Resp]):
    """A servicer method, called like a ``grpc.aio`` unary stub method."""

    __slots__ = ("_method",)

    def __init__(self, method: Callable[[Req, Any], Awaitable[Resp]]) -> None:
        self._method = method

    def __call__(
        self,
        request: Req,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
        **_options: Any,
    ) -> Awaitable[Resp]:
        return self._call(request, timeout, metadata)

    async def _call(
        self,
        request: Req,
        timeout: float | None,
        metadata: Sequence[tuple[str, str | bytes]] | None,
    ) -> Resp:
        deadline = None if timeout is None else time.monotonic() + timeout
        context = InProcessContext(metadata, deadline)
        try:
            async with asyncio.timeout(timeout):
                return await self._method(request, context)
        except _Aborted as exc:
            raise _rpc_error(exc.code, exc.details, exc.trailers) from None
        except TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except Exception as exc:
            log.exception("in-process call failed")
            raise _rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}") from None


def _rpc_error(
    code: grpc.StatusCode, details: str, trailers: Sequence[tuple[str, str | bytes]] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=details
    )


class _Stub:
    """Every attribute is a servicer method wrapped as an ``InProcessUnary``."""

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> InProcessUnary[Any, Any]:
        method = InProcessUnary(getattr(self._servicer, name))
        setattr(self, name, method)  # built once per name
        return method


HealthCheck = grpc.aio.UnaryUnaryMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]


@dataclass(frozen=True, slots=True)
class InProcessStubs:
    """Stand-ins for the bridge's unary stubs (``stream``, ``admin``, the health check),
    typed as the network stubs they replace. Live sessions keep the network path."""

    stream: stream_pb2_grpc.NotificationStreamAsyncStub
    admin: admin_pb2_grpc.NotificationAdminServiceAsyncStub
    health_check: HealthCheck

    @classmethod
    def of(cls, stream: object, admin: object, health: object) -> InProcessStubs:
        """Stubs calling the servicers ``stream``, ``admin`` and ``health`` (its ``Check``)."""
        return cls(
            stream=cast("stream_pb2_grpc.NotificationStreamAsyncStub", _Stub(stream)),
            admin=cast("admin_pb2_grpc.NotificationAdminServiceAsyncStub", _Stub(admin)),
            health_check=cast(HealthCheck, InProcessUnary(health.Check)),  # type: ignore[attr-defined]
        )
