"""Several WebSocket messages in one write: the app's side of ``SEND_MANY``.

Each message Quart sends costs a trip through its ``Websocket.send`` (a yield to the
loop, a signal), the ASGI call, hypercorn's stream and protocol objects, wsproto's
framing and a locked ``write`` + ``drain``: about what a whole delivery costs a plain
Quart server (docs/BENCHMARKS.md, "Comparison suite"). When a socket has several
notifications waiting, the bridge hands them over at once instead, and the server
writes them in one go. The protocol does not change: every notification is still one
text message of its own; only the writing is shared.

``SEND_MANY`` is an ASGI extension: the server advertises it in the scope's
``extensions`` (``bridge.wsguard`` does, for hypercorn), and the app sends
``{"type": SEND_MANY, "texts": [...]}``. Served by anything else, ``send_many`` sends
the messages one by one, as Quart would.

``WRITE_NOW`` goes further, for a broadcast's deliveries: the app sends
``{"type": WRITE_NOW, "attach": DirectWriter(...)}`` once, and the server sets
``attach.target`` to an object whose ``write_now`` writes text messages at once when the
connection can take them without waiting (``DirectTarget``). The relay then writes to
an idle socket from its own turn instead of waking the socket's handler task
(``DirectWriter`` is the socket's ``bridge.upstream.DirectWrite``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, Protocol

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Quart
from quart.asgi import ASGIWebsocketConnection
from quart.utils import cancel_tasks, raise_task_exceptions
from quart.wrappers import Websocket

from bridge.metrics import BridgeMetrics
from bridge.relayframes import DeliveryFrames
from bridge.slim import SlimQueue, first_of

#: The ASGI extension (scope key and message type) of a batch of text messages.
SEND_MANY: Final = "tidings.websocket.send_many"
#: The ASGI extension (scope key and message type) that gives the app a ``DirectTarget``.
WRITE_NOW: Final = "tidings.websocket.write_now"


class DirectTarget(Protocol):
    """The server's side of one socket, for writes that do not wait."""

    def write_now(self, payloads: Sequence[bytes]) -> bool:
        """Write UTF-8 ``payloads`` as text messages now, in one write; False: wrote none
        (the connection cannot take them without waiting)."""
        ...


class BatchingWebsocket(Websocket):
    """Quart's ``Websocket`` that can send several text messages in one write.

    Served by ``BatchingWebsocketConnection`` (``create_app`` sets both).
    """

    async def send_many(self, texts: list[str]) -> None:
        """Send each of ``texts`` as one text message, in order, written at once.

        Call only once accepted (the bridge accepts first).
        """
        await self._send(texts)

    async def attach(self, writer: DirectWriter) -> bool:
        """Have the server set ``writer.target`` to this socket's ``DirectTarget``;
        whether it did (a server without ``WRITE_NOW`` does not). Call once accepted."""
        await self._send(writer)
        return writer.target is not None


class BatchingWebsocketConnection(ASGIWebsocketConnection):
    """Quart's ASGI side of a WebSocket, taking a list of texts as one batch.

    Nothing is kept per socket: whether the server takes ``SEND_MANY`` is read from
    the scope when a batch is sent. Received messages wait in a ``SlimQueue`` (Quart's
    is an ``asyncio.Queue``, four deques that every idle socket would hold).
    """

    def __init__(self, app: Quart, scope: WebsocketScope) -> None:
        super().__init__(app, scope)
        self.queue = SlimQueue()  # type: ignore[assignment]

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Quart's, waiting for the first of its two tasks with ``first_of`` rather than
        ``asyncio.wait``: every idle socket waits there for its whole life."""
        websocket = self._create_websocket_from_scope(send)
        receiver_task = asyncio.ensure_future(self.handle_messages(receive))
        handler_task = asyncio.ensure_future(self.handle_websocket(websocket, send))
        await first_of(handler_task, receiver_task)
        tasks = {handler_task, receiver_task}
        done = {task for task in tasks if task.done()}
        await cancel_tasks(tasks - done)
        raise_task_exceptions(done)

    async def send_data(self, send: Any, data: str | bytes | list[str] | DirectWriter) -> None:
        if isinstance(data, DirectWriter):
            if WRITE_NOW in (self.scope.get("extensions") or {}):
                await send({"type": WRITE_NOW, "attach": data})
        elif not isinstance(data, list):
            await super().send_data(send, data)
        elif SEND_MANY in (self.scope.get("extensions") or {}):
            await send({"type": SEND_MANY, "texts": data})
        else:
            for text in data:
                await super().send_data(send, text)


class DirectDeliveries:
    """Relayed notifications written straight to sockets, counted as the handler counts
    what it writes (once per turn of the loop for all the sockets written in it:
    ``BridgeMetrics.delivered_soon``). One per bridge, shared by every socket's
    ``DirectWriter``."""

    __slots__ = ("_deliveries", "_metrics")

    def __init__(self, deliveries: DeliveryFrames, metrics: BridgeMetrics) -> None:
        self._deliveries = deliveries
        self._metrics = metrics

    def write(self, target: DirectTarget, frames: list[bytes], start: int) -> int:
        """Write the notifications at the head of ``frames[start:]`` (up to the first
        other event) to ``target``; how many were written."""
        payloads: list[bytes] = []
        created: list[float] = []
        self._deliveries.payloads(frames, start, payloads, created)
        if not payloads or not target.write_now(payloads):
            return 0
        self._metrics.delivered_soon(created)
        return len(created)


class DirectWriter:
    """One socket's ``bridge.upstream.DirectWrite``: its relayed notifications, written to
    ``target`` (set by the server, ``BatchingWebsocket.attach``) by ``DirectDeliveries``.

    The one object a socket holds for it (an idle socket holds it for hours).
    """

    __slots__ = ("_deliveries", "target")

    def __init__(self, deliveries: DirectDeliveries) -> None:
        self._deliveries = deliveries
        self.target: DirectTarget | None = None

    def __call__(self, frames: list[bytes], start: int) -> int:
        target = self.target
        return 0 if target is None else self._deliveries.write(target, frames, start)
