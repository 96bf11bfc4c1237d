"""The engine as the bridge sees it: one gRPC channel, its stubs, and session links.

A browser WebSocket talks to the engine through a ``SessionLink``, the narrow
interface the WebSocket handler depends on. The links of a bridge share one
``SessionRelayService.Relay`` stream: each behaves exactly as its own ``Connect``
call would (same credentials, messages and endings), but the engine batches the
events of all sessions into few messages, and an idle browser costs no gRPC stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Protocol

import grpc
from grpc_health.v1 import health_pb2
from tidings import metadata as keys
from tidings.v1 import admin_pb2_grpc, relay_pb2, relay_pb2_grpc, stream_pb2, stream_pb2_grpc

from bridge.metadata import Metadata
from server.rpc.inprocess import InProcessStubs, LocalDelivery

log = logging.getLogger("tidings.bridge")

ERROR_CODE_KEY: Final = keys.ERROR_CODE
ERROR_FIELD_KEY: Final = keys.ERROR_FIELD

#: Unary calls that take longer than this fail with DEADLINE_EXCEEDED (HTTP 503).
CALL_TIMEOUT: Final = 10.0
#: A broadcast commits and delivers slice after slice (docs/PROTOCOL.md §4.7): cut short
#: by the ordinary deadline, a large one would stop halfway, answer 503 and invite a
#: retry that gives its first recipients the notification twice.
BROADCAST_TIMEOUT: Final = 300.0
HEALTH_TIMEOUT: Final = 2.0

#: The engine tolerates pings every 10 s; keepalive notices a dead engine within ~40 s.
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.enable_retries", 0),
]


class StreamEnded(Exception):
    """The engine ended a session with a non-OK status.

    ``established`` says whether ``connection_established`` had arrived: a stream that
    fails before it never reached a session (engine unreachable, credentials refused).
    """

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str,
        *,
        error_code: str | None = None,
        established: bool = True,
    ) -> None:
        super().__init__(f"{status.name}: {details}")
        self.status = status
        self.details = details
        self.error_code = error_code
        self.established = established


def trailer(error: grpc.aio.AioRpcError, key: str) -> str | None:
    """One value of the call's trailing metadata, or None."""
    for k, v in error.trailing_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return None


class SessionLink(Protocol):
    """One browser session's link to the engine."""

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        """The next server message; None when the engine ended the session with OK.

        Raises ``StreamEnded`` for any other end.
        """
        ...

    async def receive_frame(self) -> bytes | None:
        """``receive``, serialized: the caller parses what it needs of it."""
        ...

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        """Pass one client command on; False once the session has ended."""
        ...

    def ready(self) -> bool:
        """Whether a message is waiting: ``receive`` returns it without suspending."""
        ...

    def write_directly(self, write: DirectWrite | None) -> None:
        """While the handler waits in ``receive``/``receive_frame`` with nothing taken,
        hand what arrives to ``write`` first (None: stop); what it does not take wakes
        the handler as ever."""
        ...

    def reject(self, code: str, message: str) -> None:
        """Report a client message that could not be decoded; the engine answers it with
        error ``code`` (or ``rate_limited``: it counts against the rate limit)."""
        ...

    @property
    def established(self) -> asyncio.Future[None]:
        """Done once the engine has greeted the session: commands sent from then on
        are answered after the greeting and the replay, in order."""
        ...

    def close(self) -> None:
        """Tear the session down (idempotent); the engine sees the client go."""
        ...

    @property
    def ending(self) -> asyncio.Future[StreamEnded]:
        """Done as soon as the session ends (even while the handler is busy writing)."""
        ...

    @property
    def ended(self) -> StreamEnded | None:
        """How the session ended, once it has."""
        ...


class DirectWrite(Protocol):
    """Writes a session's events to its browser at once, without waiting (``bridge.ws``)."""

    def __call__(self, frames: list[bytes], start: int) -> int:
        """Write ``frames[start:]``, or a first part of them, now and in order; how many
        were written (0: none, the handler takes them). Never raises for a socket that
        cannot take them: it writes none."""
        ...


#: Commands (and bytes of them) one session may have waiting for the relay stream to take
#: them. A browser that sends faster than the engine reads is closed as slow (1013).
MAX_PENDING_COMMANDS: Final = 1024
MAX_PENDING_BYTES: Final = 1 << 20
#: The byte allowance of a session whose engine states none (older than this bridge):
#: the engine's default (docs/PROTOCOL.md §4.8).
FALLBACK_MAX_BYTES: Final = 8 << 20


class RelayPort(Protocol):
    """What a ``RelaySessionLink`` needs of the stream that carries it."""

    def send(
        self, request: relay_pb2.RelayRequest, link: RelaySessionLink | None = None, size: int = 0
    ) -> None:
        """Queue ``request``; with ``link``, call ``link.taken(size)`` once it is written."""
        ...

    def close_session(self, sid: int, undelivered: Sequence[int]) -> None:
        """The link of ``sid`` is done: tell the engine, with the ids to requeue."""
        ...


class RelaySessionLink:
    """A ``SessionLink`` carried, with many others, by one ``Relay`` stream.

    Frames wait here until the WebSocket handler takes them. The engine states, with the
    session's first frame, how far the browser may fall behind (``RelayAllowance``); a
    browser beyond it ends its session as slow. Whatever a link received but never
    passed on — buffered when it ended, or still in flight towards it — goes back to the
    engine by the ids the engine put on the frames, and the engine queues it again.

    The other way, a browser may have at most ``MAX_PENDING_COMMANDS`` commands (and
    ``MAX_PENDING_BYTES``) waiting for the relay stream; one that floods it is closed as
    slow too.

    With ``write_directly``, frames that arrive while the handler waits with nothing in
    hand go to the browser from the relay's own turn (``flush``, once per relay message):
    no task wakes per socket. Order holds: the handler is woken for whatever the direct
    write leaves, and nothing is written directly while it holds frames.
    """

    __slots__ = (
        "_bytes",
        "_direct",
        "_ended",
        "_established",
        "_frames",
        "_greeted",
        "_head",
        "_ids",
        "_loop",
        "_max",
        "_max_bytes",
        "_pending",
        "_pending_bytes",
        "_relay",
        "_replay",
        "_sid",
        "_touched",
        "_waiter",
        "ending",
    )

    def __init__(self, relay: RelayPort, sid: int, max_buffer: int = 1000) -> None:
        self._relay = relay
        self._sid = sid
        # Until the engine states the allowance (an engine that does not: these bounds).
        self._max = max_buffer
        self._max_bytes = FALLBACK_MAX_BYTES
        self._bytes = 0  # of the frames waiting in ``_frames``
        self._replay = 0  # replayed events still to come (on top of the allowance)
        # Lists and a read index rather than deques: an idle link holds an empty buffer
        # for hours, and a deque allocates 760 bytes up front.
        self._frames: list[bytes] = []
        self._ids: list[int] = []  # the notification id of each frame, 0 for other events
        self._head = 0
        self._pending = 0  # commands sent and not yet written to the relay stream
        self._pending_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._ended: StreamEnded | None = None
        self._established = False
        #: Done as soon as the session has ended, whatever the handler is doing.
        # Looked up once: ``get_running_loop`` checks the process id on every call.
        self._loop = asyncio.get_running_loop()
        self.ending: asyncio.Future[StreamEnded] = self._loop.create_future()
        self._greeted: asyncio.Future[None] | None = None
        self._direct: DirectWrite | None = None
        self._touched = False  # a ``flush`` is due at the end of this relay message

    # --- the relay's side ---

    def deliver(
        self,
        frame: bytes,
        notification_id: int = 0,
        allowance: relay_pb2.RelayAllowance | None = None,
    ) -> bool:
        """One event of the session (``notification_id``: the id, for a notification).

        True when the caller must ``flush`` this link once the relay message that
        carried the event is through (returned once per link until it does).
        """
        if self._ended is not None:
            return False
        if self._greeted is None or not self._greeted.done():
            if allowance is not None:
                self._max = allowance.max_events
                self._max_bytes = allowance.max_bytes
                self._replay = allowance.replay_events
            self.established.set_result(None)
        elif self._replay:
            self._replay -= 1
            self._max += 1
            self._max_bytes += len(frame)
        self._frames.append(frame)
        self._ids.append(notification_id)
        self._bytes += len(frame)
        waiting = len(self._frames) - self._head
        if waiting > self._max or (self._bytes > self._max_bytes and waiting > 1):
            self._give_up("the client did not keep up")
            return False
        if self._waiter is None:  # the handler is busy: it comes back for these itself
            return False
        if self._direct is None:
            self._wake()
            return False
        if self._touched:
            return False
        self._touched = True
        return True

    def flush(self) -> None:
        """Write what waits straight to the browser if the handler is still waiting
        (``write_directly``); wake the handler for whatever is left."""
        self._touched = False
        waiter, direct = self._waiter, self._direct
        if waiter is None or waiter.done() or self._ended is not None:
            return
        frames, head = self._frames, self._head
        if direct is not None:
            try:
                written = direct(frames, head)
            except Exception:  # a bug: the handler's path still works
                log.exception("direct write failed; the socket's handler writes from now on")
                self._direct = None
                written = 0
            if written:
                self._established = True
                end = head + written
                if end == len(frames):
                    frames.clear()
                    self._ids.clear()
                    self._head = self._bytes = 0
                    return
                self._bytes -= sum(map(len, frames[head:end]))
                self._head = end
        waiter.set_result(None)

    def taken(self, size: int) -> None:
        """A command of ``size`` bytes that this link sent was written to the stream."""
        self._pending -= 1
        self._pending_bytes -= size

    def end(self, ended: StreamEnded) -> None:
        if self._ended is None:
            ended.established = ended.established and self._established
            self._ended = ended
            self.ending.set_result(ended)
            self._wake()

    def _give_up(self, reason: str) -> None:
        """End the session as slow and hand back what it holds."""
        self.end(StreamEnded(grpc.StatusCode.RESOURCE_EXHAUSTED, reason))
        self._relay.close_session(self._sid, self._take_undelivered())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take_undelivered(self) -> list[int]:
        """The ids of the notifications buffered and never taken; the buffer is emptied."""
        ids = [i for i in self._ids[self._head :] if i]
        self._frames, self._ids, self._head, self._bytes = [], [], 0, 0
        return ids

    def _submit(self, request: relay_pb2.RelayRequest) -> bool:
        """Queue one client message; False (and the session ends as slow) on a flood."""
        size = request.ByteSize()
        if self._pending >= MAX_PENDING_COMMANDS or self._pending_bytes + size > MAX_PENDING_BYTES:
            self._give_up("the client sent faster than the engine takes its messages")
            return False
        self._pending += 1
        self._pending_bytes += size
        self._relay.send(request, self, size)
        return True

    @property
    def established(self) -> asyncio.Future[None]:
        if self._greeted is None:  # made on demand: most links are asked once, early
            self._greeted = self._loop.create_future()
        return self._greeted

    # --- SessionLink ---

    async def receive(self) -> stream_pb2.ConnectResponse | None:
        frame = await self.receive_frame()
        return None if frame is None else stream_pb2.ConnectResponse.FromString(frame)

    async def receive_frame(self) -> bytes | None:
        while self._head == len(self._frames):
            if self._ended is not None:
                if self._ended.status is grpc.StatusCode.OK:
                    return None
                raise self._ended
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._frames[self._head]
        self._head += 1
        self._bytes -= len(frame)
        if self._head == len(self._frames):
            self._frames.clear()
            self._ids.clear()
            self._head = 0
        self._established = True
        return frame

    def ready(self) -> bool:
        return self._head < len(self._frames)

    def write_directly(self, write: DirectWrite | None) -> None:
        self._direct = write

    @property
    def ended(self) -> StreamEnded | None:
        return self._ended

    async def send(self, request: stream_pb2.ConnectRequest) -> bool:
        if self._ended is not None:
            return False
        return self._submit(
            relay_pb2.RelayRequest(
                command=relay_pb2.RelayCommand(session_id=self._sid, request=request)
            )
        )

    def reject(self, code: str, message: str) -> None:
        if self._ended is None:
            self._submit(
                relay_pb2.RelayRequest(
                    invalid=relay_pb2.RelayInvalid(session_id=self._sid, code=code, message=message)
                )
            )

    def close(self) -> None:
        self._direct = None
        undelivered = self._take_undelivered()
        if self._ended is None:
            self._relay.close_session(self._sid, undelivered)
        elif undelivered:  # the engine ended the session; it only needs to requeue
            self._relay.send(
                relay_pb2.RelayRequest(
                    close=relay_pb2.RelayClose(session_id=self._sid, undelivered_ids=undelivered)
                )
            )
        self.end(StreamEnded(grpc.StatusCode.CANCELLED, "closed"))


class RelayStream:
    """One ``Relay`` call and the session links it carries.

    Closing a session is a handshake: the bridge sends ``RelayClose``, the engine closes
    the session and answers with an ``end`` frame. Notifications that arrive for the
    session in between were never passed on: they go back with another ``RelayClose``.

    In-process (``--role all``) the call yields ``LocalBatch`` objects rather than
    ``RelayResponse`` messages: the same frames, each delivery a ``LocalDelivery`` tuple.
    """

    def __init__(self, stub: relay_pb2_grpc.SessionRelayServiceAsyncStub) -> None:
        self._call = stub.Relay()
        self._links: dict[int, RelaySessionLink] = {}
        self._closing: set[int] = set()
        # Bounded by the links: each has at most MAX_PENDING_COMMANDS commands here, and
        # an open and a close or two.
        self._outbox: deque[tuple[relay_pb2.RelayRequest, RelaySessionLink | None, int]] = deque()
        self._wake = asyncio.Event()
        self.broken = False
        self._tasks = (
            asyncio.create_task(self._read(), name="tidings-relay-read"),
            asyncio.create_task(self._write(), name="tidings-relay-write"),
        )

    def open(
        self,
        sid: int,
        metadata: Metadata,
        params: stream_pb2.ConnectParams,
        link: RelaySessionLink,
    ) -> None:
        self._links[sid] = link
        self.send(
            relay_pb2.RelayRequest(
                open=relay_pb2.RelayOpen(session_id=sid, metadata=dict(metadata), params=params)
            )
        )

    def send(
        self, request: relay_pb2.RelayRequest, link: RelaySessionLink | None = None, size: int = 0
    ) -> None:
        if not self.broken:
            self._outbox.append((request, link, size))
            self._wake.set()

    def close_session(self, sid: int, undelivered: Sequence[int]) -> None:
        """The bridge is done with ``sid``: tell the engine, and await its ``end``."""
        if self._links.pop(sid, None) is None or self.broken:
            return
        self._closing.add(sid)
        self.send(
            relay_pb2.RelayRequest(
                close=relay_pb2.RelayClose(session_id=sid, undelivered_ids=undelivered)
            )
        )

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    request, link, size = self._outbox.popleft()
                    await self._call.write(request)
                    if link is not None:
                        link.taken(size)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the reader reports how the call ended

    async def _read(self) -> None:
        ended = StreamEnded(grpc.StatusCode.UNAVAILABLE, "the engine closed the relay")
        try:
            links = self._links
            async for response in self._call:
                late: dict[int, list[int]] = {}
                touched: list[RelaySessionLink] = []  # links to flush once all are in
                frames: Sequence[relay_pb2.RelayFrame | LocalDelivery] = response.frames
                for frame in frames:
                    if type(frame) is tuple:  # a delivery, in-process (the hot path)
                        sid, nid, event = frame
                        link = links.get(sid)
                        if link is not None:
                            if link.deliver(event, nid):
                                touched.append(link)
                        elif nid and sid in self._closing:
                            late.setdefault(sid, []).append(nid)
                        continue
                    assert not isinstance(frame, tuple)
                    sid = frame.session_id
                    link = links.get(sid)
                    if link is not None:
                        nid = frame.notification_id
                        if nid:  # a notification (the hot path): no end, no allowance
                            if link.deliver(frame.event, nid):
                                touched.append(link)
                        elif frame.HasField("end"):
                            del links[sid]
                            link.end(_ended(frame.end))
                        else:
                            allowance = frame.allowance if frame.HasField("allowance") else None
                            if link.deliver(frame.event, frame.notification_id, allowance):
                                touched.append(link)
                    elif sid in self._closing:
                        if frame.HasField("end"):
                            self._closing.discard(sid)
                        elif frame.notification_id:
                            late.setdefault(sid, []).append(frame.notification_id)
                for link in touched:
                    link.flush()
                for sid, ids in late.items():
                    self.send(
                        relay_pb2.RelayRequest(
                            close=relay_pb2.RelayClose(session_id=sid, undelivered_ids=ids)
                        )
                    )
        except grpc.aio.AioRpcError as exc:
            ended = StreamEnded(exc.code(), exc.details() or "", established=True)
        finally:
            self.broken = True
            links, self._links = self._links, {}
            self._closing.clear()
            for link in links.values():
                link.end(StreamEnded(ended.status, ended.details))

    async def close(self) -> None:
        self._call.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}


def _ended(end: relay_pb2.RelayEnd) -> StreamEnded:
    return StreamEnded(
        _STATUS_BY_CODE.get(end.code, grpc.StatusCode.UNKNOWN),
        end.message,
        error_code=end.error_code or None,
    )


class Upstream:
    """The engine's gRPC services over one channel. Create and close inside the loop.

    ``max_session_buffer`` is the lag allowance (in events) of sessions whose engine
    states none, being older than this bridge; this engine states its own.

    With ``local`` (the bridge shares the engine's process, ``--role all``) the calls —
    every REST call, the health check and the live sessions' ``Relay`` stream — go
    straight to the servicers with the same messages and errors, no socket and no
    serialization.
    """

    def __init__(
        self,
        target: str,
        *,
        max_session_buffer: int = 1000,
        local: InProcessStubs | None = None,
    ) -> None:
        self.target = target
        self.max_session_buffer = max_session_buffer
        self._relay: RelayStream | None = None
        self._next_sid = 0
        self.in_process = local is not None
        #: The network channel; None in-process, where nothing goes over one.
        self.channel: grpc.aio.Channel | None = None
        self.relay: relay_pb2_grpc.SessionRelayServiceAsyncStub
        if local is not None:
            self.stream = local.stream
            self.admin = local.admin
            self.relay = local.relay
            self._health_check = local.health_check
        else:
            channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self.channel = channel
            self.stream = stream_pb2_grpc.NotificationStreamStub(channel)
            self.admin = admin_pb2_grpc.NotificationAdminServiceStub(channel)
            self.relay = relay_pb2_grpc.SessionRelayServiceStub(channel)
            self._health_check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )

    def open_session(
        self, metadata: Metadata, params: stream_pb2.ConnectParams | None = None
    ) -> SessionLink:
        """Start a live session with the caller's credentials (``metadata``) and connect
        parameters; the engine speaks first."""
        if self._relay is None or self._relay.broken:
            # Made in an empty context: its call and tasks outlive the WebSocket whose
            # handler opens it, and would keep that socket's (Quart's context) alive.
            self._relay = contextvars.Context().run(RelayStream, self.relay)
        self._next_sid += 1
        link = RelaySessionLink(self._relay, self._next_sid, self.max_session_buffer)
        if params is None:
            params = stream_pb2.ConnectParams()
        self._relay.open(self._next_sid, metadata, params, link)
        return link

    async def serving(self) -> bool:
        """Whether the engine's health service reports SERVING for the whole server."""
        try:
            answer = await self._health_check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.close()
        if self.channel is not None:
            await self.channel.close()
