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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from quart.asgi import ASGIWebsocketConnection
from quart.wrappers import Websocket

#: The ASGI extension (scope key and message type) of a batch of text messages.
SEND_MANY: Final = "tidings.websocket.send_many"


class BatchingWebsocket(Websocket):
    """Quart's ``Websocket`` that can send several text messages in one write."""

    #: The server's ASGI ``send``, when it takes ``SEND_MANY`` (set by the connection).
    asgi_send: Any = None

    async def send_many(self, texts: Sequence[str]) -> None:
        """Send each of ``texts`` as one text message, in order, written at once.

        Call only once accepted (the bridge accepts first).
        """
        send = self.asgi_send
        if send is not None:
            await send({"type": SEND_MANY, "texts": texts})
            return
        for text in texts:
            await self._send(text)


class BatchingWebsocketConnection(ASGIWebsocketConnection):
    """Builds ``BatchingWebsocket``s that know the server's ``send`` if it takes batches."""

    def _create_websocket_from_scope(self, send: Any) -> Websocket:
        websocket = super()._create_websocket_from_scope(send)
        extensions = self.scope.get("extensions") or {}
        if isinstance(websocket, BatchingWebsocket) and SEND_MANY in extensions:
            websocket.asgi_send = send
        return websocket
