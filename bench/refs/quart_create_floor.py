"""Reference (floor): the REST create's HTTP stack alone — Quart on hypercorn, storing nothing.

    python -m bench.refs.quart_create_floor --port 0 [--loop uvloop|asyncio]

``POST /api/v1/notifications`` parses the JSON body, gives it an id and answers 201 with
it; no validation, no database, no delivery. It is what serving one REST create with the
stack the bridge is built on (hypercorn, h11, Quart) costs before Tidings does anything:
the highest creates/s any server on this stack can show on the machine, with the same
clients.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, request

from bench.refs._common import listen, parse_args, ready, run

app = Quart(__name__)
ids = itertools.count(1)


@app.post("/api/v1/notifications")
async def create() -> tuple[dict[str, Any], int]:
    """Echo the body with an id, as a create would answer."""
    body = await request.get_json()
    return {"id": next(ids), **body, "read": False}, 201


async def main(host: str, port: int) -> None:
    """Serve until killed."""
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


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(main(args.host, args.port), args.loop)
