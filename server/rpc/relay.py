"""The SessionRelayService servicer: many live sessions over one stream (the bridge's link).

Each relayed session is opened, fed and ended exactly like a ``Connect`` call (see
``server.rpc.stream``); only the framing differs. One writer serves every session of
the stream: sessions signal when events wait (``Session.watch``), the writer drains
them into one batched ``RelayResponse`` and confirms the deliveries once it is
written. No task per session, one gRPC message per batch. The frames state what the
bridge needs without decoding events: the session's lag allowance with its greeting,
the notification id with each delivery.

A session's commands are handled in the order they came, as on ``Connect``: the reader
handles them itself while they need no I/O, and a command that needs the store
(``STORE_COMMANDS``: ``mark_read``, ``archive`` …) runs in a task of its own;
commands of that session that come meanwhile wait behind it (at most
``MAX_WAITING`` of them — a client that sends more is closed as slow), while the
other sessions go on.

Commands may come before their session has finished opening (the open replays from the
store): they wait, in order, within the same bound, and run once it is open; a client
that sends more is closed as slow as soon as the session opens. If the open fails they
go with it: the session's ``end`` frame says why.

A bridge in the engine's own process (``--role all``) reads the same batches as
``server.rpc.inprocess.LocalBatch`` objects instead (``RelayServicer.relay_local``):
each delivery the tuple of what its frame would carry, every other frame a
``RelayFrame``. Nothing is framed, joined and parsed back per recipient.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from tidings.v1 import relay_pb2, stream_pb2

from server.auth import Authenticator
from server.engine import Engine, Session
from server.engine.errors import InvalidArgument, TidingsError
from server.engine.events import (
    Archive,
    Closed,
    CloseReason,
    Command,
    ConnectionEstablished,
    Delete,
    Delivery,
    GetCounts,
    MarkAllRead,
    MarkRead,
    MarkSeen,
    Unarchive,
    UpdatePreferences,
)
from server.rpc import convert, wire
from server.rpc.errors import status_for
from server.rpc.inprocess import LocalBatch, LocalDelivery
from server.rpc.stream import CLOSE_ERROR_CODE, CLOSE_STATUS, Context, command, open_session
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: Events per session per batch, so that one busy session cannot starve the others.
PER_SESSION = 64
#: Frames per RelayResponse.
PER_BATCH = 256
#: Commands of one session that may wait behind a command that needs the store.
MAX_WAITING = 1024
#: The commands that need the store (a round trip): each runs out of line, in order.
STORE_COMMANDS = (
    MarkRead, MarkSeen, MarkAllRead, Archive, Unarchive, Delete, GetCounts, UpdatePreferences,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Invalid:
    """A ``RelayInvalid``: a client message the relay client could not decode."""

    code: str
    message: str


#: ``wire.relay_event_frame``'s keys, for the frames of deliveries spliced here.
_FRAMES = wire.RELAY_RESPONSE_FRAMES
_SESSION_ID = wire.RELAY_FRAME_SESSION_ID
_EVENT = wire.RELAY_FRAME_EVENT
_NOTIFICATION_ID = wire.RELAY_FRAME_NOTIFICATION_ID


def _end_frame(sid: int, end: relay_pb2.RelayEnd) -> bytes:
    return relay_pb2.RelayResponse(
        frames=[relay_pb2.RelayFrame(session_id=sid, end=end)]
    ).SerializeToString()


class RelayServicer:
    """Translates tidings.v1.SessionRelayService onto the engine."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._auth = authenticator

    async def Relay(
        self, requests: AsyncIterable[relay_pb2.RelayRequest], context: Context
    ) -> AsyncIterator[bytes]:
        relay = _Relay(self._engine, self._auth)
        reader = asyncio.create_task(relay.read(requests))
        try:
            async for frames in relay.batches(reader, local=False):
                yield b"".join(cast(list[bytes], frames))
        finally:
            await cancel_and_wait(reader)
            await relay.close()

    async def relay_local(
        self, requests: AsyncIterable[relay_pb2.RelayRequest], context: Context
    ) -> AsyncIterator[LocalBatch]:
        """``Relay`` for a reader in this process: the same batches, as ``LocalBatch``."""
        relay = _Relay(self._engine, self._auth)
        reader = asyncio.create_task(relay.read(requests))
        try:
            async for frames in relay.batches(reader, local=True):
                yield LocalBatch(cast(list[relay_pb2.RelayFrame | LocalDelivery], frames))
        finally:
            await cancel_and_wait(reader)
            await relay.close()


class _Relay:
    """The sessions of one relay stream."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._auth = authenticator
        self._sessions: dict[int, Session] = {}
        self._ready: dict[int, Session | relay_pb2.RelayEnd] = {}
        self._opening: set[int] = set()
        self._abandoned: set[int] = set()  # closed by the client before their open finished
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Sessions with a store command running: the commands that came since, in order.
        self._waiting: dict[int, deque[Command | _Invalid]] = {}
        #: Sessions still opening: the commands that came meanwhile, in order.
        self._early: dict[int, deque[Command | _Invalid]] = {}
        self._overflowed: set[int] = set()  # opening sessions sent more than MAX_WAITING

    async def read(self, requests: AsyncIterable[relay_pb2.RelayRequest]) -> None:
        async for request in requests:
            kind = request.WhichOneof("kind")
            if kind == "open":
                opening = request.open
                self._opening.add(opening.session_id)
                params = opening.params if opening.HasField("params") else None
                self._spawn(self._open(opening.session_id, dict(opening.metadata), params))
            elif kind == "command":
                sid = request.command.session_id
                wanted = request.command.request
                if wanted.WhichOneof("kind") == "refresh":  # may wait for keys: not in line
                    self._spawn(self._refresh(sid, wanted))
                else:
                    await self._handle(sid, convert.command_from_pb(wanted))
            elif kind == "close":
                self._close(request.close.session_id, request.close.undelivered_ids)
            elif kind == "invalid":
                invalid = request.invalid
                await self._handle(invalid.session_id, _Invalid(invalid.code, invalid.message))

    async def batches(self, reader: asyncio.Task[None], *, local: bool) -> AsyncIterator[list[Any]]:
        """The frames of each batch (``_collect``), as events wait, until the reader ends."""
        while True:
            if not self._ready:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait((waiter, reader), return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    waiter.cancel()
                    return
            frames, drained = self._collect(local)
            if frames:
                yield frames
            _confirm(drained)
            del drained  # a session that closed goes now, not with the next batch

    def _collect(self, local: bool) -> tuple[list[Any], list[Session]]:
        """The frames of one batch: serialized ``RelayResponse.frames`` entries, a
        delivery's in parts (the batch is joined once); or, ``local``, a ``LocalBatch``'s
        frames."""
        frames: list[Any] = []
        append = frames.append
        count = 0
        drained: list[Session] = []
        encode, encoder = convert.event_to_pb, convert.DELIVERY_ENCODER
        while self._ready and count < PER_BATCH:
            sid, ready = next(iter(self._ready.items()))
            del self._ready[sid]
            if isinstance(ready, relay_pb2.RelayEnd):
                append(_local_end(sid, ready) if local else _end_frame(sid, ready))
                count += 1
                continue
            drained.append(ready)
            session_key = _SESSION_ID + wire.varint(sid) if sid and not local else b""
            for event in ready.drain(PER_SESSION):
                count += 1
                if type(event) is Delivery:  # the hot path: the frame in parts, no copies
                    envelope = event.envelope
                    body = envelope.encoded(encoder)  # ``delivery_encoded``: once per envelope
                    nid = envelope.notification.id
                    if local:
                        append((sid, nid, body))
                        continue
                    event_size = wire.varint(len(body))
                    id_part = _NOTIFICATION_ID + wire.varint(nid) if nid else b""
                    size = wire.varint(
                        len(session_key) + 1 + len(event_size) + len(body) + len(id_part)
                    )
                    frames += (_FRAMES, size, session_key, _EVENT, event_size, body, id_part)
                    continue
                if isinstance(event, Closed):
                    self._sessions.pop(sid, None)
                    status = CLOSE_STATUS.get(event.reason)
                    if status is not None:
                        end = relay_pb2.RelayEnd(
                            code=status.value[0],
                            message=event.message,
                            error_code=CLOSE_ERROR_CODE.get(event.reason, ""),
                        )
                        append(_local_end(sid, end) if local else _end_frame(sid, end))
                    break
                encoded = encode(event)
                if not isinstance(encoded, bytes):
                    encoded = encoded.SerializeToString()
                if isinstance(event, ConnectionEstablished):
                    frame = _greeting_frame(sid, encoded, ready, event.queued)
                else:
                    frame = wire.relay_event_frame(sid, encoded)
                append(_as_local(frame) if local else frame)
            if ready.waiting and sid in self._sessions:
                self._ready[sid] = ready  # more than its share: back of the line
        return frames, drained

    async def _open(
        self, sid: int, metadata: dict[str, str], params: stream_pb2.ConnectParams | None
    ) -> None:
        try:
            session = await open_session(self._engine, self._auth, metadata, params)
        except TidingsError as exc:
            self._opening.discard(sid)
            self._early.pop(sid, None)
            self._overflowed.discard(sid)
            if self._abandoned_now(sid):
                return
            status = status_for(exc)
            self._ready[sid] = relay_pb2.RelayEnd(
                code=status.value[0],
                message=exc.message,
                error_code=exc.code,
                error_field=exc.field if isinstance(exc, InvalidArgument) else "",
            )
            self._wake.set()
            return
        self._opening.discard(sid)
        early = self._early.pop(sid, None)
        overflowed = sid in self._overflowed
        self._overflowed.discard(sid)
        if self._abandoned_now(sid) or sid in self._sessions:  # gone already, or id reused
            session.close(CloseReason.CLIENT_GONE)
            return
        self._sessions[sid] = session
        session.watch(lambda: self._on_ready(sid, session))
        if overflowed:
            session.close(CloseReason.SLOW, "the client sent faster than it is answered")
        elif early:  # what came meanwhile runs first; what comes from now on queues behind
            self._waiting[sid] = early
            self._spawn(self._in_order(sid, session, early.popleft()))

    def _abandoned_now(self, sid: int) -> bool:
        if sid in self._abandoned:
            self._abandoned.discard(sid)
            return True
        return False

    def _on_ready(self, sid: int, session: Session) -> None:
        self._ready[sid] = session
        self._wake.set()

    async def _handle(self, sid: int, item: Command | _Invalid) -> None:
        """Pass one client message of ``sid`` on, after those that came before it."""
        session = self._sessions.get(sid)
        if session is None:
            if sid in self._opening:
                self._wait_for_open(sid, item)
            return
        waiting = self._waiting.get(sid)
        if waiting is not None:  # a store command of this session runs: queue behind it
            if len(waiting) >= MAX_WAITING:
                session.close(CloseReason.SLOW, "the client sent faster than it is answered")
            else:
                waiting.append(item)
        elif isinstance(item, STORE_COMMANDS):  # store I/O: do not hold up the other sessions
            self._waiting[sid] = deque()
            self._spawn(self._in_order(sid, session, item))
        else:
            await _apply(session, item)

    def _wait_for_open(self, sid: int, item: Command | _Invalid) -> None:
        """Keep ``item`` until ``sid`` has opened (within ``MAX_WAITING``)."""
        early = self._early.setdefault(sid, deque())
        if len(early) >= MAX_WAITING:
            self._overflowed.add(sid)
            early.clear()
        elif sid not in self._overflowed:
            early.append(item)

    async def _in_order(self, sid: int, session: Session, first: Command | _Invalid) -> None:
        """Run ``first``, then what queued behind it, until nothing waits."""
        waiting = self._waiting[sid]
        item: Command | _Invalid = first
        try:
            while True:
                await _apply(session, item)
                if not waiting:
                    return
                item = waiting.popleft()
        finally:
            if self._waiting.get(sid) is waiting:
                del self._waiting[sid]

    async def _refresh(self, sid: int, request: stream_pb2.ConnectRequest) -> None:
        """A token refresh: verified (which may wait for keys) out of line."""
        refresh = await command(self._auth, request)
        session = self._sessions.get(sid)
        if session is not None:
            await session.handle(refresh)
        elif sid in self._opening:
            self._wait_for_open(sid, refresh)

    def _close(self, sid: int, undelivered: Sequence[int]) -> None:
        """The client is done with ``sid``: requeue what it could not pass on, close the
        session and acknowledge with an ``end`` frame (after which nothing more comes)."""
        if undelivered:
            self._engine.undelivered(list(undelivered))
        session = self._sessions.pop(sid, None)
        self._waiting.pop(sid, None)
        self._early.pop(sid, None)
        self._overflowed.discard(sid)
        if session is None:
            if sid in self._opening:
                self._abandoned.add(sid)
            return
        session.close(CloseReason.CLIENT_GONE)
        self._ready[sid] = relay_pb2.RelayEnd(code=grpc.StatusCode.OK.value[0], message="closed")
        self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """The stream ended: every session's client is gone."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            session.close(CloseReason.CLIENT_GONE)
        self._sessions.clear()
        self._ready.clear()
        self._waiting.clear()
        self._early.clear()


def _confirm(sessions: list[Session]) -> None:
    """Their events taken so far were written."""
    for session in sessions:
        session.confirm()


async def _apply(session: Session, item: Command | _Invalid) -> None:
    if isinstance(item, _Invalid):
        session.reject(item.code, item.message)
    else:
        await session.handle(item)


def _local_end(sid: int, end: relay_pb2.RelayEnd) -> relay_pb2.RelayFrame:
    return relay_pb2.RelayFrame(session_id=sid, end=end)


def _as_local(frame: bytes) -> relay_pb2.RelayFrame:
    """The one ``RelayResponse.frames`` entry of ``frame``, as a message."""
    return relay_pb2.RelayResponse.FromString(frame).frames[0]


def _greeting_frame(sid: int, event: bytes, session: Session, replay: int) -> bytes:
    """The session's first frame: its greeting, with the lag allowance the bridge applies."""
    events, size = session.lag_allowance
    allowance = relay_pb2.RelayAllowance(max_events=events, max_bytes=size, replay_events=replay)
    return relay_pb2.RelayResponse(
        frames=[relay_pb2.RelayFrame(session_id=sid, event=event, allowance=allowance)]
    ).SerializeToString()
