"""Reference: python-socketio (ASGI) on uvicorn (uvloop, httptools), ``sio.emit`` to all.

    python -m bench.refs.socketio_srv --port 0 [--loop uvloop|asyncio]

Clients connect with auth ``{"id": ID}`` and join the room ``ID``; they are emitted
``hello``. The control client (auth ``{"id": "control"}``) emits ``broadcast`` (payload:
``sio.emit("msg", payload)`` to everyone but itself) or ``target`` ([id, payload]:
``sio.emit("msg", payload, to=id)``). uvicorn accepts permessage-deflate when offered.
"""

from __future__ import annotations

from typing import Any

import socketio

from bench.refs._common import CONTROL_ID, HELLO, parse_args, run, serve_uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio)


async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    """Join the room named by the client's id; greet it."""
    client_id = str((auth or {}).get("id", ""))
    if client_id == CONTROL_ID:
        return
    await sio.enter_room(sid, client_id)
    await sio.emit("hello", HELLO, to=sid)


async def broadcast(sid: str, payload: str) -> None:
    """The same payload to every client."""
    await sio.emit("msg", payload, skip_sid=sid)


async def target(sid: str, data: list[str]) -> None:
    """One payload to one client id."""
    await sio.emit("msg", data[1], to=data[0])


for _handler in (connect, broadcast, target):
    sio.on(_handler.__name__, _handler)


async def main(host: str, port: int) -> None:
    """Serve until killed."""
    await serve_uvicorn(app, host, port)


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(main(args.host, args.port), args.loop)
