"""Reference (optional): a FastAPI WebSocket route on uvicorn (uvloop, httptools).

    python -m bench.refs.fastapi_ws --port 0 [--loop uvloop|asyncio]

Same shape as ``quart_ws``: a set of sockets, ``await ws.send_text`` for each, gathered.
uvicorn accepts permessage-deflate when offered (its default).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.refs._common import HELLO, parse_args, parse_target, run, serve_uvicorn

app = FastAPI()
clients: set[WebSocket] = set()
by_id: defaultdict[str, set[WebSocket]] = defaultdict(set)


async def _send_all(targets: set[WebSocket], payload: str) -> None:
    await asyncio.gather(*(ws.send_text(payload) for ws in list(targets)), return_exceptions=True)


@app.websocket("/ws")
async def client(ws: WebSocket, id: str = "") -> None:
    """A client: registered, greeted, then held open until it leaves."""
    await ws.accept()
    clients.add(ws)
    by_id[id].add(ws)
    try:
        await ws.send_text(HELLO)
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(ws)
        by_id[id].discard(ws)


@app.websocket("/control")
async def control(ws: WebSocket) -> None:
    """``B<payload>``: to everyone; ``T<id> <payload>``: to one id."""
    await ws.accept()
    try:
        while True:
            command = await ws.receive_text()
            if command[0] == "B":
                await _send_all(clients, command[1:])
            elif command[0] == "T":
                target, payload = parse_target(command)
                await _send_all(by_id.get(target, set()), payload)
    except WebSocketDisconnect:
        pass


async def main(host: str, port: int) -> None:
    """Serve until killed."""
    await serve_uvicorn(app, host, port)


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(main(args.host, args.port), args.loop)
