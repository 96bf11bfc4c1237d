"""Reference: a hand-rolled ``websockets`` server broadcasting with ``websockets.broadcast``.

    python -m bench.refs.ws_raw --port 0 [--loop uvloop|asyncio]

permessage-deflate is accepted when the client offers it (the library's default).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.refs._common import HELLO, listen, parse_args, parse_target, ready, run

clients: set[ServerConnection] = set()
by_id: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    """Control connections drive broadcasts; every other connection is a client."""
    url = urlsplit(ws.request.path if ws.request else "/")
    if url.path == "/control":
        async for command in ws:
            assert isinstance(command, str)
            if command[0] == "B":
                broadcast(clients, command[1:])
            elif command[0] == "T":
                target, payload = parse_target(command)
                broadcast(by_id.get(target, ()), payload)
        return
    client_id = parse_qs(url.query).get("id", [""])[0]
    clients.add(ws)
    by_id[client_id].add(ws)
    try:
        await ws.send(HELLO)
        await ws.wait_closed()
    finally:
        clients.discard(ws)
        by_id[client_id].discard(ws)


async def main(host: str, port: int) -> None:
    """Serve until killed."""
    sock = listen(host, port)
    # Keepalive pings off (as in every reference): they are not what is measured.
    async with serve(handler, sock=sock, compression="deflate", ping_interval=None, max_queue=None):
        ready(host, sock.getsockname()[1])
        await asyncio.Future()


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(main(args.host, args.port), args.loop)
