"""hypercorn's HTTP/1.1 protocol, writing a response's head and body in one send.

hypercorn 0.18 writes each h11 event as it comes: the response head (status line and
headers), then the body, then nothing for the end of a body of known length. Every
JSON answer is thus two ``send`` calls, and on the loopback (or any socket with
``TCP_NODELAY``, as the bridge's) two TCP segments for the client to take: a tenth of
the bridge's event loop went to socket writes under REST load (docs/BENCHMARKS.md,
"REST create, lean path").

``CoalescingH11Protocol`` holds a final response's head (status ≥ 200) until the
next event of the stream, which for every answer the bridge gives follows at once
(the ASGI app sends ``http.response.start`` and then its body), and writes both
together. Informational heads (``100 Continue``, ``101`` for WebSockets) go out at
once, and any other event (the stream closing, raw WebSocket data) first writes what
is held, so the bytes on the wire, and their order, are the same as before.
"""

from __future__ import annotations

import h11
import hypercorn.protocol
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent


class CoalescingH11Protocol(H11Protocol):
    """``H11Protocol`` that writes a final response head together with what follows it."""

    #: A response head not written yet (set between ``Response`` and its body).
    _held: bytes | None = None

    async def stream_send(self, event: StreamEvent) -> None:
        if self._held is not None and not isinstance(event, Body | EndBody):
            await self._write_held()
        await super().stream_send(event)

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:
            if self._held is not None:  # pragma: no cover - h11 allows one head per response
                await self._write_held()
            self._held = data
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        await self.send(RawData(data=data))

    async def _write_held(self) -> None:
        held, self._held = self._held, None
        if held:
            await self.send(RawData(data=held))


def install() -> None:
    """Make hypercorn serve HTTP/1.1 with ``CoalescingH11Protocol`` (it has no setting for
    its protocol classes; one per process, as ``bridge.tcpserver``)."""
    hypercorn.protocol.H11Protocol = CoalescingH11Protocol  # type: ignore[attr-defined]
