"""Reference: a plain Quart WebSocket route on hypercorn (uvloop), broadcasting in a loop.

    python -m bench.refs.quart_ws --port 0 [--loop uvloop|asyncio]

Each socket is registered in a set; a broadcast is ``await ws.send(payload)`` for every
socket, gathered. permessage-deflate is hypercorn's default: accepted when offered.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, cast

from quart import Quart, websocket
from quart.wrappers import Websocket

from bench.refs._common import HELLO, parse_args, parse_target, run, serve_hypercorn

app = Quart(__name__)
clients: set[Websocket] = set()
by_id: defaultdict[str, set[Websocket]] = defaultdict(set)


async def _send_all(targets: set[Websocket] | list[Websocket], payload: str) -> None:
    await asyncio.gather(*(ws.send(payload) for ws in list(targets)), return_exceptions=True)


@app.websocket("/ws")
async def client() -> None:
    """A client: registered, greeted, then held open until it leaves."""
    ws = cast(Websocket, cast(Any, websocket)._get_current_object())
    client_id = ws.args.get("id", "")
    await ws.accept()
    clients.add(ws)
    by_id[client_id].add(ws)
    try:
        await ws.send(HELLO)
        while True:
            await ws.receive()
    finally:
        clients.discard(ws)
        by_id[client_id].discard(ws)


@app.websocket("/control")
async def control() -> None:
    """``B<payload>``: to everyone; ``T<id> <payload>``: to one id."""
    while True:
        command = await websocket.receive()
        assert isinstance(command, str)
        if command[0] == "B":
            await _send_all(clients, command[1:])
        elif command[0] == "T":
            target, payload = parse_target(command)
            await _send_all(by_id.get(target, set()), payload)


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(serve_hypercorn(app, args.host, args.port), args.loop)
