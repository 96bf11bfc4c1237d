"""Several server processes behind one PostgreSQL store, with a real broker between them.

Each test runs twice: PostgreSQL LISTEN/NOTIFY and Redis pub/sub as the broker. The
nodes are real ``tidings serve`` processes (engine + bridge) on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc

from tests.grpc.conftest import Stream
from tests.harness import ServerProcess
from tests.waiting import until

pytestmark = [pytest.mark.timeout(120), pytest.mark.postgres]


def as_user(user: str) -> tuple[tuple[str, str], ...]:
    return (("x-tidings-user", user),)


class Cluster:
    """Nodes started on demand, all on one database and one broker channel."""

    def __init__(self, database_url: str, broker_url: str) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.nodes: list[ServerProcess] = []
        self.channels: list[grpc.aio.Channel] = []

    async def node(self) -> ServerProcess:
        server = ServerProcess(
            "--insecure",
            "--broker-url",
            self.broker_url,
            "--heartbeat-interval",
            "1",
            database_url=self.database_url,
        )
        self.nodes.append(await server.start())
        return server

    def channel(self, node: ServerProcess) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(node.grpc_addr)
        self.channels.append(channel)
        return channel

    async def connect(self, node: ServerProcess, user: str, since: int | None = None) -> Stream:
        md = list(as_user(user))
        if since is not None:
            md.append(("tidings-since", str(since)))
        stub = stream_pb2_grpc.NotificationStreamStub(self.channel(node))
        stream = Stream(stub.Connect(metadata=md))
        await stream.hello()
        return stream

    async def create(self, node: ServerProcess, user: str, title: str = "hi") -> int:
        stub = admin_pb2_grpc.NotificationAdminServiceStub(self.channel(node))
        reply = await stub.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id=user, type="t", title=title),
            metadata=as_user("ops"),
        )
        return reply.notification.id

    async def rest(self, node: ServerProcess, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=node.http_url, timeout=10) as http:
            response = await http.request(method, path, headers={"X-Tidings-User": "ops"}, **kw)
        response.raise_for_status()
        return response.json()

    async def connections(self, node: ServerProcess, user: str) -> int:
        status = await self.rest(node, "GET", "/api/v1/ws/notifications/status",
                                 params={"user_id": user})  # fmt: skip
        return int(status["connection_count"])

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        for node in self.nodes:
            await node.kill()


@pytest.fixture(params=["postgres", "redis"])
async def cluster(request: pytest.FixtureRequest, pg_database_url: str) -> AsyncIterator[Cluster]:
    if request.param == "postgres":
        broker_url = pg_database_url
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        broker_url = f"{redis_url}?channel=tidings-test-{uuid.uuid4().hex}"
    c = Cluster(pg_database_url, broker_url)
    yield c
    await c.close()


async def within(seconds: float, awaitable: Awaitable[Any]) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


async def test_created_on_a_reaches_b_within_a_second_by_grpc_and_rest(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    stream = await cluster.connect(b, "u")
    by_grpc = await cluster.create(a, "u")
    assert await within(1.0, stream.notifications(1)) == [by_grpc]
    by_rest = await cluster.rest(a, "POST", "/api/v1/notifications",
                                 json={"user_id": "u", "type": "t", "title": "rest"})  # fmt: skip
    assert await within(1.0, stream.notifications(1)) == [by_rest["id"]]


async def test_same_user_on_both_nodes_and_mark_read_crosses(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    on_a, on_b = await cluster.connect(a, "u"), await cluster.connect(b, "u")
    made = await cluster.create(a, "u")
    assert await within(1.0, on_a.notifications(1)) == [made]
    assert await within(1.0, on_b.notifications(1)) == [made]
    await on_a.send(mark_read=stream_pb2.MarkReadCommand(notification_id=made))
    for stream in (on_a, on_b):
        event = await within(1.0, stream.recv_kind("notification_marked_read"))
        assert event.notification_id == made


async def test_inbox_changes_on_a_reach_b_and_b_honours_them(cluster: Cluster) -> None:
    """Seen, delete and mutes made through node A, seen by node B over the real broker."""
    a, b = await cluster.node(), await cluster.node()
    on_b = await cluster.connect(b, "u")
    kept, gone = await cluster.create(a, "u"), await cluster.create(a, "u")
    assert await within(1.0, on_b.notifications(2)) == [kept, gone]
    users_a = stream_pb2_grpc.NotificationStreamStub(cluster.channel(a))
    await users_a.MarkSeen(stream_pb2.MarkSeenRequest(up_to_id=kept), metadata=as_user("u"))
    assert (await within(1.0, on_b.recv_kind("notifications_seen"))).up_to_id == kept
    await users_a.DeleteNotification(
        stream_pb2.DeleteNotificationRequest(notification_id=gone), metadata=as_user("u")
    )
    assert (await within(1.0, on_b.recv_kind("notification_deleted"))).notification_id == gone
    await users_a.UpdatePreferences(
        stream_pb2.UpdatePreferencesRequest(muted_types=["m"]), metadata=as_user("u")
    )
    assert list((await within(1.0, on_b.recv_kind("preferences_updated"))).muted_types) == ["m"]
    admin_a = admin_pb2_grpc.NotificationAdminServiceStub(cluster.channel(a))
    muted = (  # stored, but neither pushed nor replayed
        await admin_a.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id="u", type="m", title="quiet"),
            metadata=as_user("ops"),
        )
    ).notification.id
    later = await cluster.connect(b, "u", since=0)  # opened after the mute, on the other node
    replayed = [(await later.recv_kind("notification")).notification.id]
    assert replayed == [kept]  # not the deleted one, not the muted one
    await later.send(ping=stream_pb2.PingCommand())
    await within(1.0, later.recv_kind("pong"))
    await on_b.send(ping=stream_pb2.PingCommand())
    await within(1.0, on_b.recv_kind("pong"))  # the muted one was not pushed before it
    page = await users_a.ListNotifications(
        stream_pb2.ListNotificationsRequest(), metadata=as_user("u")
    )
    assert [n.id for n in page.notifications] == [muted, kept]  # still in the inbox


async def test_disconnect_through_a_closes_b_and_stats_show_the_cluster(cluster: Cluster) -> None:
    a, b, c = await cluster.node(), await cluster.node(), await cluster.node()
    on_b = await cluster.connect(b, "u")
    await cluster.connect(c, "u")
    await cluster.connect(c, "v")

    async def everyone_sees_three() -> bool:
        stats = [await cluster.rest(n, "GET", "/api/v1/ws/notifications/stats") for n in (a, b, c)]
        return all(s["total_connections"] == 3 and s["unique_users"] == 2 for s in stats)

    await until(everyone_sees_three, within=10)
    stats = await cluster.rest(a, "GET", "/api/v1/ws/notifications/stats")
    assert len(stats["nodes"]) == 3

    reply = await cluster.rest(a, "POST", "/api/v1/ws/notifications/disconnect",
                               json={"user_id": "u"})  # fmt: skip
    assert reply["disconnected"] == 2
    assert await on_b.status() == grpc.StatusCode.ABORTED

    async def gone() -> bool:
        return await cluster.connections(a, "u") == 0

    await until(gone, within=10)


async def test_offline_user_is_queued_once_and_served_by_any_node(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    made = [await cluster.create(a, "off", str(i)) for i in range(3)]
    for node in (a, b):
        stats = await cluster.rest(node, "GET", "/api/v1/ws/notifications/stats")
        assert stats["queued"] == 3
    stream = await cluster.connect(b, "off")
    assert await stream.notifications(3) == made
    stream.cancel()


#: Notifications made while the client of the kill -9 test is away: within the replay cap.
AWAY = 60


async def test_kill_9_of_the_clients_node_loses_nothing_acknowledged(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    acknowledged: list[int] = []
    stop = asyncio.Event()
    enough = asyncio.Event()
    back = asyncio.Event()  # the client has resumed on the other node

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            acknowledged.append(await cluster.create(a, "k", str(i)))
            i += 1
            await asyncio.sleep(0.02)  # a steady producer
            if killed and not back.is_set() and len(acknowledged) >= killed[0] + AWAY:
                # Resume replays the newest 100 only (the replay cap, docs/PROTOCOL.md §4):
                # the producer stays within it while the client is away, however long the
                # dead node's presence takes to expire.
                await back.wait()
            if killed and len(acknowledged) >= killed[0] + AWAY + 30:
                enough.set()

    killed: list[int] = []
    received: list[int] = []
    stream = await cluster.connect(b, "k", since=0)
    producer = asyncio.create_task(produce())
    try:
        while len(received) < 30:
            received += await stream.notifications(1)
        await b.kill()  # the client's node dies mid-stream
        killed.append(len(acknowledged))
        assert await stream.status() == grpc.StatusCode.UNAVAILABLE

        async def forgotten() -> bool:  # presence of a SIGKILLed node expires
            return await cluster.connections(a, "k") == 0

        await until(forgotten, within=15)
        resumed = await cluster.connect(a, "k", since=received[-1])
        back.set()
        await within(30.0, enough.wait())  # the producer went on meanwhile
    finally:
        stop.set()
        back.set()
        await producer
    while not received or received[-1] != acknowledged[-1]:
        received += await within(5.0, resumed.notifications(1))
    lost = set(acknowledged) - set(received)
    assert lost == set(), f"lost {len(lost)} acknowledged notifications"
    assert received == sorted(set(received)), "in order, none twice"


async def cut_broker(cluster: Cluster) -> None:
    """Sever every node's broker connection (they must reconnect by themselves)."""
    if cluster.broker_url.startswith("redis"):
        client = aioredis.Redis.from_url(cluster.broker_url.split("?")[0])
        try:
            await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
    else:
        conn = await asyncpg.connect(cluster.database_url.replace("+asyncpg", ""))
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'tidings-broker-%' AND datname = current_database()"
            )
            assert killed >= 1
        finally:
            await conn.close()


async def test_cut_broker_keeps_sessions_working_and_misses_nothing(cluster: Cluster) -> None:
    a, b = await cluster.node(), await cluster.node()
    stream = await cluster.connect(b, "u")
    await cut_broker(cluster)
    during = [await cluster.create(a, "u", f"during {i}") for i in range(10)]
    assert await within(10.0, stream.notifications(10)) == during
    after = await cluster.create(a, "u", "after")
    assert await within(5.0, stream.notifications(1)) == [after]

    async def reconnected() -> bool:
        joins = b.output.count("listening on PostgreSQL") + b.output.count("subscribed to Redis")
        return joins >= 2

    await until(reconnected, within=10)
    await stream.send(ping=stream_pb2.PingCommand())
    assert (await stream.recv()).WhichOneof("kind") == "pong"


Factory = Callable[[], Awaitable[ServerProcess]]
