"""The offline queue over gRPC: what `queued` and `truncated` tell a reconnecting client."""

from __future__ import annotations

import pytest
from tidings.v1 import stream_pb2

from tests.grpc.conftest import NodeFactory, Stream

pytestmark = pytest.mark.timeout(30)


async def written(stream: Stream) -> None:
    """Wait until the server has written everything it sent so far (a ping's pong follows)."""
    await stream.send(ping=stream_pb2.PingCommand())
    while (await stream.recv()).WhichOneof("kind") != "pong":
        pass


async def test_truncated_is_false_when_nothing_was_dropped_since_the_last_connect(
    make_node: NodeFactory,
) -> None:
    node = await make_node(max_offline_queue=5)
    old = [(await node.create("u", title=f"old {i}")).id for i in range(8)]
    first = await node.connect("u")
    hello = await first.hello()
    assert (hello.queued, hello.truncated) == (5, True)
    assert await first.notifications(5) == old[3:]
    await written(first)
    first.cancel()

    new = [(await node.create("u", title=f"new {i}")).id for i in range(2)]
    second = await node.connect("u")
    hello = await second.hello()
    assert (hello.queued, hello.truncated) == (2, False)
    assert await second.notifications(2) == new
