"""Two real nodes on one PostgreSQL store (both brokers): what the offline queue keeps
when a node dies, and how the stats tell the cluster from the answering node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc

from tests.cluster import test_cluster_real
from tests.cluster.test_cluster_real import Cluster, as_user
from tests.grpc.conftest import Stream
from tests.harness import ServerProcess
from tests.waiting import until

pytestmark = [pytest.mark.timeout(120), pytest.mark.postgres]

STATS = "/api/v1/ws/notifications/stats"

cluster = test_cluster_real.cluster  # the fixture: both brokers, a fresh database


async def connect(cluster: Cluster, node: ServerProcess, user: str) -> tuple[Stream, Any]:
    """A ``Connect`` stream without ``since``, and its greeting."""
    stub = stream_pb2_grpc.NotificationStreamStub(cluster.channel(node))
    stream = Stream(stub.Connect(metadata=as_user(user)))
    return stream, await stream.hello()


async def notifications(stream: Stream, n: int) -> list[int]:
    """The ids of the next ``n`` notifications, heartbeats skipped."""
    ids: list[int] = []
    while len(ids) < n:
        msg: stream_pb2.ConnectResponse = await stream.recv()
        kind = msg.WhichOneof("kind")
        if kind == "notification":
            ids.append(msg.notification.notification.id)
        else:
            assert kind == "heartbeat", msg
    return ids


async def test_rows_created_while_a_killed_nodes_user_looks_online_stay_queued(
    cluster: Cluster,
) -> None:
    a, b = await cluster.node(), await cluster.node()
    _on_b, _ = await connect(cluster, b, "k")

    async def online_on_b() -> bool:
        return await cluster.connections(a, "k") == 1

    await until(online_on_b, within=10)
    await b.kill()  # SIGKILL: "k" still looks online to a until b's presence expires
    made = sorted(await asyncio.gather(*(cluster.create(a, "k", str(i)) for i in range(40))))
    again, hello = await connect(cluster, a, "k")
    assert (hello.queued, hello.truncated) == (40, False)
    assert await notifications(again, 40) == made


async def test_stats_tell_the_cluster_from_the_answering_node(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    streams = [
        await connect(cluster, node, user)
        for node, user in ((a, "u1"), (a, "u2"), (b, "u1"), (b, "u3"), (b, "u3"))
    ]

    async def everyone_sees_five() -> bool:
        answers = [await cluster.rest(n, "GET", STATS) for n in (a, b)]
        return all(s["cluster"]["total_connections"] == 5 for s in answers)

    await until(everyone_sees_five, within=10)
    for node, own, other in ((a, (2, 2), (3, 2)), (b, (3, 2), (2, 2))):
        stats = await cluster.rest(node, "GET", STATS)
        assert stats["cluster"] == {"total_connections": 5, "unique_users": 3, "nodes": 2}
        assert (stats["total_connections"], stats["unique_users"]) == (5, 3)
        mine, theirs = stats["nodes"]
        assert mine["node_id"] == stats["node_id"] != theirs["node_id"]
        assert (mine["total_connections"], mine["unique_users"]) == own
        assert (theirs["total_connections"], theirs["unique_users"]) == other

    streams.append(await connect(cluster, a, "u4"))  # this node's own figures: live at once
    stats = await cluster.rest(a, "GET", STATS)
    assert (stats["nodes"][0]["total_connections"], stats["nodes"][0]["unique_users"]) == (3, 3)
    assert stats["cluster"]["total_connections"] == 6 == stats["total_connections"]
    assert stats["cluster"]["total_connections"] == sum(
        n["total_connections"] for n in stats["nodes"]
    )

    admin = admin_pb2_grpc.NotificationAdminServiceStub(cluster.channel(a))
    reply = await admin.GetStats(admin_pb2.GetStatsRequest(), metadata=as_user("ops"))
    assert (reply.cluster.total_connections, reply.cluster.unique_users) == (6, 4)
    assert reply.cluster.nodes == len(reply.nodes) == 2
    assert reply.nodes[0].node_id == reply.node_id
    assert reply.nodes[0].total_connections == 3
