"""Serving the bridge with hypercorn inside the node's event loop."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import hypercorn.protocol.ws_stream
from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import REGISTRY
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Opcode, RsvBits

from bridge import h11write, tcpserver, wsguard
from bridge.app import create_app
from bridge.state import bridge_state
from server.config import Settings, join_addr, split_addr
from server.rpc.inprocess import InProcessStubs

log = logging.getLogger("tidings")

#: How long open HTTP requests get to finish after the sockets were told to close.
GRACEFUL_TIMEOUT = 3.0
BACKLOG = 1024
STALLED_PEER_MS = 30_000


class StatelessDeflate(PerMessageDeflate):
    """permessage-deflate as every browser offers it, keeping no zlib state per socket.

    A negotiated socket normally holds a compressor and a decompressor for its whole
    life (their RSS per idle socket: docs/BENCHMARKS.md, "Bridge"). Here:

    * outgoing messages go uncompressed: RFC 7692 §6 lets the sender decide per message
      (RSV1 clear), and notification frames are small JSON;
    * the client is asked not to keep context between its messages
      (``client_no_context_takeover``, which a server may add on its own, RFC 7692
      §7.1.1.1), so the decompressor made for a compressed client message is dropped
      right after it.
    """

    #: Outgoing frames stay as they are (``bridge.wsguard`` may frame them itself).
    sends_uncompressed = True

    def __init__(
        self,
        client_no_context_takeover: bool = True,
        client_max_window_bits: int | None = None,
        server_no_context_takeover: bool = True,
        server_max_window_bits: int | None = None,
    ) -> None:
        super().__init__(
            client_no_context_takeover=True,
            client_max_window_bits=client_max_window_bits,
            server_no_context_takeover=True,
            server_max_window_bits=server_max_window_bits,
        )

    def frame_outbound(
        self, proto: Any, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        return rsv, data


def install_stateless_deflate() -> None:
    """Make hypercorn negotiate ``StatelessDeflate`` (it has no setting of its own)."""
    hypercorn.protocol.ws_stream.PerMessageDeflate = StatelessDeflate  # type: ignore[attr-defined]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one; SO_REUSEADDR allows a quick restart)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; accepted sockets inherit it
        # A browser that stops reading (zero window) for this long is disconnected by
        # the kernel, so a stuck socket cannot pin its buffers and handler forever.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, STALLED_PEER_MS)
    sock.setblocking(False)
    return sock


def hypercorn_config(settings: Settings, fd: int) -> Config:
    """hypercorn settings for the bridge, serving the already bound socket ``fd``."""
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.websocket_max_message_size = settings.max_message_bytes
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.backlog = BACKLOG
    config.include_server_header = False
    config.errorlog = logging.getLogger("tidings.http")
    # hypercorn builds each access line from every header and environment variable, so
    # it costs even when unused: only at debug level, and never with the query string
    # (it carries tokens).
    if settings.log_level == "debug":
        config.accesslog = logging.getLogger("tidings.access")
        config.access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus'
    return config


async def run_bridge(
    settings: Settings,
    upstream: str,
    stop: asyncio.Event,
    local: InProcessStubs | None = None,
) -> None:
    """Serve the bridge on ``settings.http_addr`` until ``stop`` is set; with ``local``
    (the engine runs in this process) its unary calls are made in-process.

    Logs ``http listening on HOST:PORT`` once ready. On ``stop`` every WebSocket is
    closed with 1001, open requests get ``GRACEFUL_TIMEOUT`` seconds, then this returns.
    """
    install_stateless_deflate()
    app = create_app(
        upstream,
        allowed_origins=settings.allowed_origins,
        max_message_bytes=settings.max_message_bytes,
        max_session_buffer=settings.max_session_buffer,
        local=local,
        registry=REGISTRY,
    )
    wsguard.install(bridge_state(app).metrics.closed)
    tcpserver.install()
    h11write.install()
    host, port = split_addr(settings.http_addr)
    sock = listen(host, port)
    bound = join_addr(host, sock.getsockname()[1])
    # hypercorn adopts a duplicate; ours is closed when serving ends.
    config = hypercorn_config(settings, sock.dup().detach())

    async def announce() -> None:
        if local is not None:
            log.info("bridge calls the engine in-process (REST calls and live sessions)")
        log.info("http listening on %s", bound)

    async def shutdown_trigger() -> None:
        await stop.wait()
        bridge_state(app).drain()

    app.before_serving(announce)  # after the state's start: the upstream is ready
    try:
        await serve(app, config, shutdown_trigger=shutdown_trigger)
    finally:
        sock.close()
