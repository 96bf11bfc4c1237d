"""The WebSocket endings hypercorn 0.18 leaves to chance, as the ``WSStream`` it builds.

hypercorn's ``WSStream`` (``hypercorn/protocol/ws_stream.py``) feeds wsproto and
relays to the app. Three of its paths let a hostile client keep resources or get no
close frame:

* A message over ``websocket_max_message_size``: hypercorn sends close 1009 but tells
  the app nothing and keeps the connection until the client answers. A client that
  never answers kept its engine session (counting notifications as sent) and its TCP
  connection forever.
* A frame that breaks RFC 6455 (invalid UTF-8 → 1007; a reserved opcode, a stray
  continuation, a fragmented or over-long control frame, RSV bits → 1002): wsproto
  reports it as a ``CloseConnection`` with that code while the connection is still
  open, and hypercorn dropped the TCP connection without sending the close frame
  (the client saw 1006).

Here, in both cases:

* the close frame goes out with its code, and the app hears ``websocket.disconnect``
  at once, so the session ends now (what it had not written goes back to the queue);
* when the framing is intact (1009), the client's frames are read and dropped until
  its closing answer, and the connection is dropped then or after ``CLOSE_TIMEOUT``
  seconds, whichever comes first;
* when it is not (1002, 1007), the rest of the stream cannot be parsed: the
  connection is dropped right after the close frame.

The app's own closes keep hypercorn's way: the connection is dropped when the app
returns (``bridge.ws`` bounds the close itself).

It also takes ``bridge.wswrite.SEND_MANY`` (advertised in the scope): several text
messages framed here and written to the connection at once, one ``write`` instead of
one per message. And ``bridge.wswrite.WRITE_NOW``: it hands itself to the app as the
socket's ``DirectTarget``, whose ``write_now`` frames and writes text messages from any
code on the loop (the relay's own turn) when the connection can take them without
waiting — over HTTP/1.1, no other write holding the connection's send lock, the
transport's buffer under ``DIRECT_MAX`` — and otherwise writes nothing and says so,
leaving the app's usual path to wait.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Final, cast

import hypercorn.asyncio.task_group
import hypercorn.asyncio.worker_context
import hypercorn.protocol.h2
import hypercorn.protocol.h11
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol.events import Data, Event, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, FrameTooLargeError, WSStream
from hypercorn.typing import ASGISendEvent, TaskGroup
from hypercorn.utils import UnexpectedMessageError
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from bridge import ws
from bridge.slim import SlimEvent, SlimEventWrapper, SlimQueue
from bridge.wswrite import SEND_MANY, WRITE_NOW, DirectWriter

#: Seconds a client gets to answer our close frame before its connection is dropped.
CLOSE_TIMEOUT: Final = ws.CLOSE_TIMEOUT
#: Close reasons are at most 123 bytes (RFC 6455 §5.5).
REASON_MAX: Final = 120

#: A final text frame's first byte (FIN, no RSV bits, opcode 1), then the payload length
#: in 7 bits, or 126 and 16 bits, or 127 and 64 bits (RFC 6455 §5.2; server frames are
#: not masked).
_TEXT: Final = 0x81
_LENGTH_16: Final = struct.Struct("!BBH")
_LENGTH_64: Final = struct.Struct("!BBQ")
#: ``write_now`` writes only while the transport holds at most this many bytes not yet
#: taken by the kernel: asyncio's high-water mark, above which ``drain`` would wait.
DIRECT_MAX: Final = 1 << 16


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, unfragmented, uncompressed text frame of ``length`` bytes."""
    if length < 126:
        return bytes((_TEXT, length))
    if length < 1 << 16:
        return _LENGTH_16.pack(_TEXT, 126, length)
    return _LENGTH_64.pack(_TEXT, 127, length)


#: ``text_frame_header`` by length, for the lengths written lately (at most ``_HEADERS_MAX``).
_HEADERS: dict[int, bytes] = {}
_HEADERS_MAX: Final = 4096


def _header(length: int) -> bytes:
    """``text_frame_header(length)``, kept in ``_HEADERS``."""
    if len(_HEADERS) >= _HEADERS_MAX:
        _HEADERS.clear()
    header = _HEADERS[length] = text_frame_header(length)
    return header


def sends_plain(extension: Extension) -> bool:
    """Whether ``extension`` leaves outgoing frames as they are: not negotiated, or one
    that says so (``sends_uncompressed``, as ``bridge.runner.StatelessDeflate``)."""
    return not extension.enabled() or bool(getattr(extension, "sends_uncompressed", False))


#: What the extension's scope entry says (nothing; one dict shared by every socket).
_NO_OPTIONS: Final[dict[str, Any]] = {}


class _Advertising:
    """hypercorn's task group for one stream, adding ``SEND_MANY`` to the app's scope.

    It starts the app as hypercorn's ``TaskGroup.spawn_app`` does, with a ``SlimQueue``
    for the queue of what the connection tells the app (same bound) instead of an
    ``asyncio.Queue``: each idle socket holds that queue for its whole life.
    """

    __slots__ = ("_group",)

    def __init__(self, group: TaskGroup) -> None:
        self._group = group

    async def spawn_app(self, app: Any, config: Any, scope: Any, send: Any) -> Any:
        extensions = scope.setdefault("extensions", {})
        extensions[SEND_MANY] = extensions[WRITE_NOW] = _NO_OPTIONS
        group = self._group
        loop = getattr(group, "_loop", None)
        if not isinstance(group, hypercorn.asyncio.task_group.TaskGroup) or loop is None:
            return await group.spawn_app(app, config, scope, send)  # pragma: no cover
        app_queue: SlimQueue[Any] = SlimQueue(config.max_app_queue_size)

        def call_soon(func: Callable[..., Any], *args: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(func(*args), loop).result()

        group.spawn(
            hypercorn.asyncio.task_group._handle,
            app,
            config,
            scope,
            app_queue.get,
            send,
            partial(loop.run_in_executor, None),
            call_soon,
        )
        return app_queue.put

    def spawn(self, func: Callable[..., Any], *args: Any) -> None:
        self._group.spawn(func, *args)


class GuardedWSStream(WSStream):
    """hypercorn's ``WSStream`` with bounded, always-announced closes (module docstring)."""

    #: Told the code of every close this stream decides on (``install`` sets it).
    on_close: ClassVar[staticmethod[[int], None]] = staticmethod(lambda code: None)
    #: Whether messages can be framed here (no extension alters them); set on the
    #: instance by its first batch (an idle socket holds no attribute for it).
    _plain: bool | None = None
    #: The connection's transport and its send lock (HTTP/1.1), or ``()`` where
    #: ``write_now`` cannot write (HTTP/2); set on the instance by the first ``write_now``.
    _raw: tuple[asyncio.WriteTransport, asyncio.Lock] | tuple[()] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gone = SlimEvent()
        self.task_group = _Advertising(self.task_group)  # type: ignore[assignment]

    async def handle(self, event: Event) -> None:
        if isinstance(event, Data) and self._connection_state() is ConnectionState.CLOSED:
            return  # after the closing handshake: nothing left to parse
        await super().handle(event)
        if isinstance(event, StreamClosed):
            self._gone.set()

    async def app_send(self, message: ASGISendEvent | None) -> None:
        batch = cast(dict[str, Any] | None, message)  # SEND_MANY is not an ASGI type
        if batch is not None and batch["type"] == SEND_MANY:
            if self.closed:
                return  # as hypercorn does for any message once the connection is gone
            if self.state is not ASGIWebsocketState.CONNECTED:
                raise UnexpectedMessageError(self.state, SEND_MANY)
            await self._send_texts(batch["texts"])
            return
        if batch is not None and batch["type"] == WRITE_NOW:
            attach = batch["attach"]
            if isinstance(attach, DirectWriter):
                attach.target = self
            return
        if (
            message is None
            and not self.closed
            and self.state is ASGIWebsocketState.CONNECTED
            and self._connection_state() is ConnectionState.LOCAL_CLOSING
        ):
            # ``_fail`` closed and the app is done: wait for the client's answer, boundedly.
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._gone.wait()
            except TimeoutError:
                pass
            if not self.closed:
                await self.send(StreamClosed(stream_id=self.stream_id))
            return
        await super().app_send(message)

    async def _send_texts(self, texts: Sequence[str]) -> None:
        """Each of ``texts`` as a text message of its own, all in one write."""
        connection = self.connection
        if connection.state is not ConnectionState.OPEN:
            return  # closing: hypercorn drops what the app sends then (LocalProtocolError)
        plain = self._plain
        if plain is None:
            plain = self._plain = _sends_plain(connection)
        parts: list[bytes] = []
        if plain:
            header = text_frame_header
            for text in texts:
                payload = text.encode()
                parts.append(header(len(payload)))
                parts.append(payload)
        else:  # an extension transforms frames (compression): wsproto frames each message
            for text in texts:
                parts.append(connection.send(TextMessage(data=text)))
        await self.send(Data(stream_id=self.stream_id, data=b"".join(parts)))

    def write_now(self, payloads: Sequence[bytes]) -> bool:
        """Write ``payloads`` (UTF-8 text) as text messages, in one write, now; False
        (nothing written) unless the connection takes them without waiting: open, plain
        frames (``sends_plain``), HTTP/1.1, no write holding the connection's send lock
        (the handler's writes wait for the transport to drain under it), and at most
        ``DIRECT_MAX`` bytes already waiting in the transport."""
        if self.closed or self.state is not ASGIWebsocketState.CONNECTED:
            return False
        connection = self.connection
        if connection.state is not ConnectionState.OPEN:
            return False
        plain = self._plain
        if plain is None:
            plain = self._plain = _sends_plain(connection)
        raw = self._raw
        if raw is None:
            raw = self._raw = _raw_connection(self)
        if not plain or not raw:
            return False
        transport, lock = raw
        if lock.locked() or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > DIRECT_MAX:
            return False
        headers = _HEADERS
        if len(payloads) == 1:
            (payload,) = payloads
            header = headers.get(len(payload)) or _header(len(payload))
            transport.write(header + payload)
            return True
        parts: list[bytes] = []
        for payload in payloads:
            parts.append(headers.get(len(payload)) or _header(len(payload)))
            parts.append(payload)
        transport.write(b"".join(parts))
        return True

    async def _handle_events(self) -> None:
        for event in self.connection.events():
            state = self.connection.state
            if isinstance(event, Message):
                if state is not ConnectionState.OPEN:
                    continue  # sent after our close frame: dropped
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    self.buffer.clear()
                    await self._fail(CloseReason.MESSAGE_TOO_BIG, "message too big")
                    continue  # the framing is intact: read on, for the client's answer
                if event.message_finished:
                    await self._to_app(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                if state is ConnectionState.OPEN:
                    await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if state is ConnectionState.OPEN:
                    # Not the client's close: wsproto's report of a frame it could not parse.
                    await self._fail(CloseReason(event.code), event.reason or "")
                elif state is ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                # The client's close or answer (CLOSING/CLOSED), or an unparsable frame
                # after our close: either way the connection is done.
                await self._drop()
                return

    async def _fail(self, code: CloseReason, reason: str) -> None:
        """Close with ``code`` on the server's own decision; the app hears of it now."""
        self.on_close(int(code))
        reason = reason.encode()[:REASON_MAX].decode(errors="ignore")
        await self._send_wsproto_event(CloseConnection(code=code, reason=reason))
        await self._to_app({"type": "websocket.disconnect", "code": int(code)})

    async def _to_app(self, message: dict[str, Any]) -> None:
        assert self.app_put is not None
        await self.app_put(message)

    async def _drop(self) -> None:
        if not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))
        self._gone.set()

    def _connection_state(self) -> ConnectionState | None:
        connection = getattr(self, "connection", None)  # set when the upgrade is accepted
        return connection.state if connection is not None else None


def _sends_plain(connection: Any) -> bool:
    """Whether no extension of ``connection`` (wsproto's) alters outgoing frames."""
    extensions = getattr(getattr(connection, "_proto", None), "extensions", None)
    return extensions is not None and all(map(sends_plain, extensions))


def _raw_connection(
    stream: WSStream,
) -> tuple[asyncio.WriteTransport, asyncio.Lock] | tuple[()]:
    """The transport and send lock under ``stream`` when hypercorn serves it over HTTP/1.1
    (stream → ``H11Protocol.stream_send`` → ``TCPServer.protocol_send``, which writes
    ``Data`` unchanged); ``()`` otherwise (HTTP/2 frames it again)."""
    protocol = getattr(stream.send, "__self__", None)
    if not isinstance(protocol, hypercorn.protocol.h11.H11Protocol):
        return ()
    server = getattr(protocol.send, "__self__", None)
    if not isinstance(server, TCPServer):
        return ()
    return server.writer.transport, server.send_lock


def install(on_close: Callable[[int], None]) -> None:
    """Make hypercorn build ``GuardedWSStream`` for every WebSocket (it has no setting);
    ``on_close`` is told the code of every close it decides on (the app's metrics).

    hypercorn's stream class is one per process, so is this: install it once, for the
    app the process serves.
    """
    GuardedWSStream.on_close = staticmethod(on_close)
    # Each connection's ``can_read`` (and the worker's two events): see ``bridge.slim``.
    hypercorn.asyncio.worker_context.WorkerContext.event_class = SlimEventWrapper
    hypercorn.protocol.h11.WSStream = GuardedWSStream  # type: ignore[attr-defined]
    hypercorn.protocol.h2.WSStream = GuardedWSStream  # type: ignore[attr-defined]
