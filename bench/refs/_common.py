"""What every reference server shares: arguments, the ready line, the control commands.

WebSocket references (``ws_raw``, ``quart_ws``, ``fastapi_ws``):

* a client opens ``/ws?id=ID`` and is sent the text ``hello`` once it is registered;
* a control client opens ``/control`` and sends text frames: ``B<payload>`` sends
  ``<payload>`` to every registered client, ``T<id> <payload>`` to the clients with that id.

socket.io (``socketio_srv``): the client's CONNECT carries ``{"id": ID}`` as auth; it is
emitted ``hello``; a control client (auth ``{"id": "control"}``) emits ``broadcast``
(payload) or ``target`` ([id, payload]); clients get the event ``msg``.

gRPC (``grpc_raw``): ``/bench.Bench/Subscribe`` (request: the id as bytes, first
response ``hello``), ``/bench.Bench/Broadcast`` and ``/bench.Bench/Send`` (request
``id\\n payload``); bytes in and out, no protobuf.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Coroutine
from typing import Any

HELLO = "hello"
CONTROL_ID = "control"


def parse_args(description: str, default_loop: str = "uvloop") -> argparse.Namespace:
    """``--host``, ``--port`` (0: any free port) and ``--loop`` (asyncio or uvloop)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=default_loop)
    return parser.parse_args()


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket with TCP_NODELAY."""
    sock = socket.create_server((host, port), backlog=4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def ready(host: str, port: int) -> None:
    """The line the orchestrator waits for."""
    print(f"ready {host}:{port}", flush=True)


def run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main`` on the chosen event loop; Ctrl-C / SIGTERM end it quietly."""
    try:
        if loop == "uvloop":
            import uvloop

            uvloop.run(main)
        else:
            asyncio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)


def parse_target(command: str) -> tuple[str, str]:
    """``T<id> <payload>`` → (id, payload)."""
    target, _, payload = command[1:].partition(" ")
    return target, payload


async def serve_hypercorn(app: Any, host: str, port: int) -> None:
    """Serve a Quart ``app`` with hypercorn on the running loop until killed (no access
    log, no server header), announcing it ready once it serves."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = listen(host, port)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.backlog = 4096
    config.accesslog = None
    config.include_server_header = False
    bound = sock.getsockname()[1]

    async def announce() -> None:
        ready(host, bound)

    app.before_serving(announce)
    await serve(app, config, shutdown_trigger=asyncio.Future)


async def serve_uvicorn(app: Any, host: str, port: int) -> None:
    """Serve an ASGI ``app`` with uvicorn on the running loop until killed."""
    import uvicorn

    sock = listen(host, port)
    config = uvicorn.Config(
        app,
        loop="none",
        ws="auto",
        ws_ping_interval=None,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    ready(host, sock.getsockname()[1])
    await task
