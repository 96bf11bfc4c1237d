"""Reference (floor): the REST create's HTTP stack alone — Quart on hypercorn, storing nothing.

    python -m bench.refs.quart_create_floor --port 0 [--loop uvloop|asyncio]

``POST /api/v1/notifications`` parses the JSON body, gives it an id and answers 201 with
it; no validation, no database, no delivery. It is what serving one REST create with the
stack the bridge is built on (hypercorn, h11, Quart) costs before Tidings does anything:
the highest creates/s any server on this stack can show on the machine, with the same
clients.
"""

from __future__ import annotations

import itertools
from typing import Any

from quart import Quart, request

from bench.refs._common import parse_args, run, serve_hypercorn

app = Quart(__name__)
ids = itertools.count(1)


@app.post("/api/v1/notifications")
async def create() -> tuple[dict[str, Any], int]:
    """Echo the body with an id, as a create would answer."""
    body = await request.get_json()
    return {"id": next(ids), **body, "read": False}, 201


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0])
    run(serve_hypercorn(app, args.host, args.port), args.loop)
