"""Reference: raw grpc.aio server-streaming with bytes (identity) serializers, no protobuf.

    python -m bench.refs.grpc_raw --port 0

``/bench.Bench/Subscribe`` (request: the client id) answers ``hello`` and then every
payload for it; ``/bench.Bench/Broadcast`` (request: payload) puts the same bytes on
every stream's queue; ``/bench.Bench/Send`` (request: ``id\\npayload``) on one id's.
grpc.aio runs on the stock asyncio loop (its supported configuration).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.refs._common import HELLO, parse_args, ready, run

streams: set[asyncio.Queue[bytes]] = set()
by_id: defaultdict[bytes, set[asyncio.Queue[bytes]]] = defaultdict(set)
HELLO_BYTES = HELLO.encode()


def identity(data: bytes) -> bytes:
    """No (de)serialization: the bytes are the message."""
    return data


async def subscribe(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    """One client's stream: ``hello``, then whatever is queued for it."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    streams.add(queue)
    by_id[request].add(queue)
    try:
        yield HELLO_BYTES
        while True:
            yield await queue.get()
    finally:
        streams.discard(queue)
        by_id[request].discard(queue)


async def broadcast(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """The same bytes to every stream."""
    for queue in streams:
        queue.put_nowait(request)
    return b""


async def send(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """``id\\npayload``: the payload to that id's streams."""
    target, _, payload = request.partition(b"\n")
    for queue in by_id.get(target, ()):
        queue.put_nowait(payload)
    return b""


async def main(host: str, port: int) -> None:
    """Serve until killed."""
    server = grpc.aio.server()
    handlers = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe, identity, identity),
        "Broadcast": grpc.unary_unary_rpc_method_handler(broadcast, identity, identity),
        "Send": grpc.unary_unary_rpc_method_handler(send, identity, identity),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Bench", handlers)])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    ready(host, bound)
    await server.wait_for_termination()


if __name__ == "__main__":
    args = parse_args(__doc__.split("\n\n")[0], default_loop="asyncio")
    run(main(args.host, args.port), args.loop)
