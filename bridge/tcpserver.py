"""hypercorn's ``TCPServer`` (one per connection), without the reference cycle it leaves.

hypercorn 0.18's ``TCPServer`` keeps its ``ProtocolWrapper`` in ``self.protocol`` and
hands the protocol its own bound method ``self.protocol_send``: server → protocol →
method → server. Every closed connection (each WebSocket, each REST call) thus leaves
that cycle and everything hanging from it — the h11 state, the asyncio streams and
transport, the connection's task group and tasks, some 40 objects — for the
interpreter's full collection, which under churn runs minutes apart: the resident
memory grew by megabytes a minute until it did (docs/RELIABILITY.md §5).

``run`` returns once the connection is over: its task group has waited for every task
of the connection (the app's included) and the socket is closed, so nothing calls the
protocol any more. Dropping ``self.protocol`` then breaks the cycle, and reference
counting frees the connection at once.
"""

from __future__ import annotations

import hypercorn.asyncio.run
from hypercorn.asyncio.tcp_server import TCPServer


class CycleFreeTCPServer(TCPServer):
    """hypercorn's ``TCPServer`` that lets go of its protocol once the connection is over."""

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.__dict__.pop("protocol", None)


def install() -> None:
    """Make hypercorn serve every connection with ``CycleFreeTCPServer`` (it has no
    setting for it; one class per process, as ``bridge.wsguard``)."""
    hypercorn.asyncio.run.TCPServer = CycleFreeTCPServer  # type: ignore[attr-defined]
