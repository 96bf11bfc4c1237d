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

The relay stream (``SessionRelayService.Relay``) has its in-process form too
(``InProcessStream``): the bridge writes its ``RelayRequest`` messages into the
servicer's request iterator and reads the servicer's batches back — as its
``relay_local`` hands them (``LocalBatch``: the same frames, nothing serialized and
parsed back), or parsed from the bytes it prepares for the wire; a batch the bridge has
not yet read holds the servicer back, as HTTP/2 flow control does. Cancelling it
cancels the servicer's handler.

Messages are not copied: the servicers build fresh responses and never change
requests, and the bridge only reads what it gets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2
from tidings.v1 import relay_pb2

if TYPE_CHECKING:
    from tidings.v1 import admin_pb2_grpc, relay_pb2_grpc, stream_pb2_grpc

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

PEER = "in-process"
#: Messages an in-process stream holds, each way, before the side that sends waits (the
#: part of HTTP/2 flow control a caller relies on: a handler that does not read holds
#: its writers back, and a reader that does not read holds the handler back).
STREAM_WINDOW = 64


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


class InProcessStream(Generic[Req, Resp]):
    """A bidirectional-streaming servicer method, called like a ``grpc.aio`` stream-stream
    call: ``write`` requests, iterate over responses, ``cancel``.

    The servicer's handler runs as a task of its own, with the requests written so far
    as its iterator. Its responses (messages, or bytes prepared for the wire, parsed with
    ``parse``) wait for the reader, at most ``STREAM_WINDOW`` of them, and so do the
    requests the handler has not taken yet: ``write`` waits beyond. The call ends as
    a network call would: the responses end when the handler returns; an abort or an
    exception in the handler, or ``cancel``, ends it with an ``AioRpcError`` (its code,
    UNKNOWN, CANCELLED), which ``write`` raises from then on too.
    """

    def __init__(
        self,
        method: Callable[[AsyncIterable[Req], Any], AsyncIterator[Resp | bytes]],
        parse: Callable[[bytes], Resp],
    ) -> None:
        self._requests: asyncio.Queue[Req] = asyncio.Queue()
        self._responses: deque[Resp] = deque()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._taken = asyncio.Event()  # the handler took a request (or the call ended)
        self._parse = parse
        self._error: grpc.aio.AioRpcError | None = None
        self._done = False
        self._task = asyncio.create_task(self._run(method), name="tidings-in-process-stream")

    async def write(self, request: Req) -> None:
        while not self._done and self._requests.qsize() >= STREAM_WINDOW:
            self._taken.clear()
            await self._taken.wait()
        if self._done:
            raise self._error or _rpc_error(grpc.StatusCode.OK, "the call has ended")
        self._requests.put_nowait(request)

    def cancel(self) -> bool:
        if self._done:
            return False
        self._task.cancel()
        return True

    def __aiter__(self) -> AsyncIterator[Resp]:
        return self

    async def __anext__(self) -> Resp:
        while not self._responses:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        response = self._responses.popleft()
        if len(self._responses) < STREAM_WINDOW:
            self._room.set()
        return response

    async def _incoming(self) -> AsyncIterator[Req]:
        while True:
            request = await self._requests.get()
            self._taken.set()
            yield request

    async def _run(
        self, method: Callable[[AsyncIterable[Req], Any], AsyncIterator[Resp | bytes]]
    ) -> None:
        responses = method(self._incoming(), InProcessContext(None, None))
        try:
            async for response in responses:
                self._responses.append(
                    self._parse(response) if isinstance(response, bytes) else response
                )
                self._readable.set()
                if len(self._responses) >= STREAM_WINDOW:
                    self._room.clear()
                    await self._room.wait()
        except asyncio.CancelledError:
            self._error = _rpc_error(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        except _Aborted as exc:
            self._error = _rpc_error(exc.code, exc.details, exc.trailers)
        except Exception as exc:
            log.exception("in-process stream failed")
            self._error = _rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}")
        finally:
            self._done = True
            self._readable.set()
            self._taken.set()
            # Cancelled while waiting for the reader, the handler is still suspended at a
            # response: close it, so that its own clean-up runs (its sessions end).
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()


#: A delivery in a ``LocalBatch``: ``(session_id, notification_id, event)``, the fields
#: of its ``RelayFrame`` (``event`` the serialized ``ConnectResponse``).
LocalDelivery = tuple[int, int, bytes]


class LocalBatch:
    """A ``RelayResponse`` for a reader in the same process: its ``frames``, in order,
    deliveries as ``LocalDelivery`` tuples and every other frame as a ``RelayFrame``."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[relay_pb2.RelayFrame | LocalDelivery]) -> None:
        self.frames = frames


class _RelayStub:
    """``SessionRelayService``'s stub, in-process: ``Relay()`` is an ``InProcessStream``."""

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    def Relay(self, **_options: Any) -> InProcessStream[Any, Any]:
        local = getattr(self._servicer, "relay_local", None)
        if local is not None:  # batches as Python objects: nothing to serialize and parse
            return InProcessStream(local, relay_pb2.RelayResponse.FromString)
        return InProcessStream(self._servicer.Relay, relay_pb2.RelayResponse.FromString)


HealthCheck = grpc.aio.UnaryUnaryMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]


@dataclass(frozen=True, slots=True)
class InProcessStubs:
    """Stand-ins for the bridge's stubs (``stream``, ``admin``, ``relay``, the health
    check), typed as the network stubs they replace."""

    stream: stream_pb2_grpc.NotificationStreamAsyncStub
    admin: admin_pb2_grpc.NotificationAdminServiceAsyncStub
    relay: relay_pb2_grpc.SessionRelayServiceAsyncStub
    health_check: HealthCheck

    @classmethod
    def of(cls, stream: object, admin: object, relay: object, health: object) -> InProcessStubs:
        """Stubs calling the servicers ``stream``, ``admin``, ``relay`` and ``health``
        (its ``Check``)."""
        return cls(
            stream=cast("stream_pb2_grpc.NotificationStreamAsyncStub", _Stub(stream)),
            admin=cast("admin_pb2_grpc.NotificationAdminServiceAsyncStub", _Stub(admin)),
            relay=cast("relay_pb2_grpc.SessionRelayServiceAsyncStub", _RelayStub(relay)),
            health_check=cast(HealthCheck, InProcessUnary(health.Check)),  # type: ignore[attr-defined]
        )
