"""``WS /api/v1/ws/notifications``: one browser socket ⇄ one engine session (docs/PROTOCOL.md §5).

The handler checks the Origin (403 before the upgrade), accepts, opens a
``SessionLink`` with the caller's metadata, and relays with two tasks, one per
direction. Notifications that arrive while the downstream task waits idle are written
by the relay itself where the server allows it (``SessionLink.write_directly``); the
task writes the rest, waits out backpressure and ends the socket. Whichever direction
ends first decides how the socket closes (see ``bridge.outcomes``); the other is
cancelled. The bridge draining (shutdown) ends the relay too, with 1001. The link is
torn down whenever the socket goes, and the socket whenever the link does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, cast

import grpc
from quart import Blueprint, Response, websocket
from quart.wrappers import Websocket
from tidings.v1 import stream_pb2

from bridge.jsonwire import FrameCache, WireError, decode_command, event_frame
from bridge.metadata import BadMetadata, Metadata, ws_metadata, ws_params
from bridge.metrics import BridgeMetrics
from bridge.outcomes import ApiError, CloseCode, Ending, ending_for
from bridge.responses import error_response
from bridge.slim import first_of
from bridge.state import BridgeState, bridge_state
from bridge.upstream import SessionLink, StreamEnded
from bridge.wswrite import BatchingWebsocket, DirectWriter

log = logging.getLogger("tidings.bridge")

sockets = Blueprint("ws", __name__)

DRAINED = Ending(CloseCode.GOING_AWAY, "server shutting down")
#: The connection broke under the relay (the kernel gave up on a stalled peer, a reset):
#: there is nobody left to send a close frame to.
LOST = Ending(CloseCode.GOING_AWAY, "connection lost")
BINARY = Ending(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
TOO_BIG = Ending(CloseCode.MESSAGE_TOO_BIG, "message too big")

#: Seconds a closing socket gets to take its last frames.
CLOSE_TIMEOUT = 2.0


@sockets.websocket("/api/v1/ws/notifications")
async def notifications() -> Response | None:
    """The live notification socket."""
    state = bridge_state()
    headers = websocket.headers
    if not state.origins.allows(headers.get("Origin"), headers.get("Host")):
        state.metrics.error("http", "forbidden")
        return error_response(ApiError(403, "forbidden", "this Origin may not open a socket"))
    ws = cast(Websocket, cast(Any, websocket)._get_current_object())
    metadata: Metadata = ()
    try:
        metadata = ws_metadata(ws.args, headers)
        params = ws_params(ws.args)
    except BadMetadata as exc:
        # Credentials are judged first, as the engine does: bad connect parameters of a
        # caller the engine refuses answer unauthorized.
        code, message = exc.code, exc.message
        if code != "unauthorized" and (refusal := await _refusal(state, metadata)):
            code, message = refusal
        await ws.accept()
        ending = Ending(CloseCode.POLICY_VIOLATION, code, _error(code, message), code)
        await _finish(ws, ending, state)
        return None
    if state.draining.done():
        return error_response(ApiError(503, "unavailable", "the server is shutting down"))
    link = state.upstream.open_session(metadata, params)
    try:
        await ws.accept()
        state.metrics.ws_connections.inc()
        try:
            # Notifications that find the handler idle go to the socket from the relay's
            # turn, without waking the handler (``bridge.wswrite.DirectDeliveries``).
            if isinstance(ws, BatchingWebsocket):
                writer = DirectWriter(state.direct)
                if await ws.attach(writer):
                    link.write_directly(writer)
            ending = await _relay(ws, link, state)
            if ending is not LOST:
                await _finish(ws, ending, state)
        finally:
            state.metrics.ws_connections.dec()
    finally:
        link.close()
    return None


def _error(code: str, message: str) -> str:
    return WireError(code, message).frame


async def _relay(ws: Websocket, link: SessionLink, state: BridgeState) -> Ending:
    """Run both directions until one ends or the bridge drains; how the socket should close."""
    down = asyncio.create_task(_downstream(ws, link, state))
    up = asyncio.create_task(_upstream(ws, link, state.max_message_bytes))
    try:
        # The session may end while ``down`` is stuck writing to a browser that stopped
        # reading: its end must not wait for that write.
        await _first_of(down, up, state.draining, link.ending)
    finally:
        down.cancel()
        up.cancel()
        # Let both unwind before the link is closed (a CancelledError here propagates).
        await _settled(down, up)
    for task in (down, up):
        if task.done() and not task.cancelled():
            try:
                return task.result()
            except OSError as exc:
                log.info("websocket connection lost: %s", exc.strerror or exc)
                return LOST
            except Exception:
                log.exception("websocket relay failed")
                return Ending(CloseCode.INTERNAL_ERROR, "internal error")
    if link.ended is not None and not state.draining.done():
        return ending_for(link.ended)
    return DRAINED


#: Return once any of the futures given is done (``bridge.slim.first_of``).
_first_of = first_of


async def _settled(*tasks: asyncio.Task[Any]) -> None:
    """Wait until every task has finished, without raising what they raised."""
    for task in tasks:
        if not task.done():
            await _first_of(task)


#: At most this many messages, or about this many characters, go in one write.
BATCH_MESSAGES = 128
BATCH_CHARS = 1 << 16


def _downstream(
    ws: Websocket, link: SessionLink, state: BridgeState
) -> Coroutine[Any, Any, Ending]:
    """Engine → browser until the engine ends the session (one coroutine, no wrapper:
    every idle socket holds it)."""
    if isinstance(ws, BatchingWebsocket):
        return _downstream_batched(ws, link, state)
    return _downstream_one_by_one(ws, link, state.frames, state.metrics)


async def _downstream_batched(
    ws: BatchingWebsocket, link: SessionLink, state: BridgeState
) -> Ending:
    """Engine → browser, writing whatever waits for the socket when its turn comes at
    once (``BatchingWebsocket.send_many``, up to ``BATCH_MESSAGES``): one JSON text
    message per event as ever, one write for all of them.

    A notification's frame is made from the relayed bytes (``DeliveryFrames``) without
    parsing them; other events are parsed and encoded as before.
    """
    # No bound methods kept across the wait: an idle socket would hold each of them.
    frames, deliveries, metrics = state.frames, state.deliveries, state.metrics
    size = 0  # characters in the batch being made; 0: none begun
    while True:
        try:
            data = await link.receive_frame()
        except StreamEnded as ended:
            return ending_for(ended)
        if data is None:
            return ending_for(None)
        if size == 0:  # a batch begins (its lists made here: an idle socket holds none)
            texts: list[str] = []
            created: list[float] = []  # of the notifications among them
            others: list[tuple[str, str | None]] = []  # other events: type, error code
        delivery = deliveries.frame(data)
        if delivery is not None:
            text, at = delivery
            created.append(at)
        else:
            message = stream_pb2.ConnectResponse.FromString(data)
            if message.WhichOneof("kind") == "notification":
                notification = message.notification.notification
                text = frames.frame(notification)
                ts = notification.created_at
                created.append(ts.seconds + ts.nanos * 1e-9)
            else:
                framed = event_frame(message, frames)
                if framed is None:
                    text = ""
                else:
                    kind, text = framed
                    others.append((kind, message.error.code if kind == "error" else None))
        if text:
            texts.append(text)
            size += len(text)
        if link.ready() and len(texts) < BATCH_MESSAGES and size < BATCH_CHARS:
            continue
        if not texts:
            continue
        await ws.send_many(texts)
        if created:
            metrics.delivered(created)
        for kind, code in others:
            metrics.ws_messages_sent.inc(kind)
            if code is not None:
                metrics.error("ws", code)
        size = 0


async def _downstream_one_by_one(
    ws: Websocket, link: SessionLink, frames: FrameCache, metrics: BridgeMetrics
) -> Ending:
    """Engine → browser, one ``send`` per event (on a server that takes no batches)."""
    send = ws.send
    observe = metrics.delivery_latency.observe
    count = metrics.ws_messages_sent.inc
    clock = time.time
    while True:
        try:
            message = await link.receive()
        except StreamEnded as ended:
            return ending_for(ended)
        if message is None:
            return ending_for(None)
        if message.WhichOneof("kind") == "notification":
            notification = message.notification.notification
            await send(frames.frame(notification))
            created = notification.created_at
            age = clock() - created.seconds - created.nanos * 1e-9
            observe(age if age > 0.0 else 0.0)
            count("notification")
            continue
        framed = event_frame(message, frames)
        if framed is None:
            continue
        kind, text = framed
        await send(text)
        if kind == "error":
            metrics.error("ws", message.error.code)
        count(kind)


async def _upstream(ws: Websocket, link: SessionLink, max_bytes: int) -> Ending:
    """Browser → engine until a frame is too big or binary (the browser leaving cancels
    this).

    Frames wait (in order, in the socket's queue) until the engine has greeted the
    session, so that commands sent at once are answered after ``connection_established``.
    Frames that are no command go to the engine as such: they count against the rate
    limit, and the engine answers them.
    """
    receive = ws.receive
    await link.established
    while True:
        frame = await receive()
        if not isinstance(frame, str):  # Quart hands an empty binary frame over as None
            return BINARY
        # hypercorn counts characters of text frames; the limit is in bytes. Only long
        # frames can be over it, so short ones skip the encode.
        if len(frame) * 4 > max_bytes and len(frame.encode(errors="surrogatepass")) > max_bytes:
            return TOO_BIG
        command = decode_command(frame)
        if isinstance(command, WireError):
            link.reject(command.code, command.message)
            continue
        # If the session has ended, the downstream task is about to say how.
        await link.send(command)


async def _refusal(state: BridgeState, metadata: Metadata) -> tuple[str, str] | None:
    """``("unauthorized", why)`` if the engine refuses these credentials, else None."""
    try:
        await state.upstream.stream.WhoAmI(
            stream_pb2.WhoAmIRequest(), metadata=metadata, timeout=CLOSE_TIMEOUT
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return "unauthorized", exc.details() or "unauthorized"
    return None


async def _finish(ws: Websocket, ending: Ending, state: BridgeState) -> None:
    """Send the last error frame, if any, then close with the ending's code.

    A browser that stopped reading cannot take even the close frame: give up after
    ``CLOSE_TIMEOUT`` (the kernel drops such a connection after ``TCP_USER_TIMEOUT``).
    """
    metrics = state.metrics
    metrics.closed(int(ending.code))
    if ending.error_code is not None:
        metrics.error("ws", ending.error_code)
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            if ending.error_frame is not None:
                await ws.send(ending.error_frame)
                metrics.sent("error")
            await ws.close(int(ending.code), ending.reason)
    except TimeoutError:
        log.info("websocket close timed out (the browser is not reading)")
