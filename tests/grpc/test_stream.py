"""NotificationStream end to end: a real grpc.aio server, generated stubs, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from tidings.v1 import stream_pb2

from tests.auth_tokens import token
from tests.grpc.conftest import Node, NodeFactory, auth
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)


async def test_server_speaks_first(node: Node) -> None:
    stream = await node.connect("u1")
    hello = await stream.hello()
    assert hello.user_id == "u1"
    assert hello.connection_id
    assert hello.heartbeat_interval == 30.0
    assert (hello.queued, hello.truncated) == (0, False)
    assert hello.server_time.seconds > 0


async def test_every_client_message_gets_its_answer(node: Node) -> None:
    mine = await node.create("u1")
    stream = await node.connect("u1")
    await stream.hello()
    assert (await stream.notifications(1)) == [mine.id]

    await stream.send(ping=stream_pb2.PingCommand())
    assert (await stream.recv_kind("pong")).timestamp.seconds > 0

    await stream.send(mark_read=stream_pb2.MarkReadCommand(notification_id=mine.id))
    assert (await stream.recv_kind("notification_marked_read")).notification_id == mine.id

    await stream.send(subscribe=stream_pb2.SubscribeCommand(notification_types=["b", "a"]))
    updated = await stream.recv_kind("subscription_updated")
    assert updated.mode == stream_pb2.FILTER_MODE_ONLY
    assert list(updated.notification_types) == ["a", "b"]

    await stream.send(unsubscribe=stream_pb2.UnsubscribeCommand(notification_types=["a"]))
    updated = await stream.recv_kind("subscription_updated")
    assert list(updated.notification_types) == ["b"]
    assert list(updated.excluded_types) == []


async def test_every_stream_error_code(make_node: NodeFactory) -> None:
    node = await make_node(max_rate=2)
    theirs = await node.create("someone-else")
    stream = await node.connect("u1")
    await stream.hello()
    await stream.send()  # no oneof set
    await stream.send(mark_read=stream_pb2.MarkReadCommand(notification_id=0))
    await stream.send(mark_read=stream_pb2.MarkReadCommand(notification_id=theirs.id))
    await stream.send(subscribe=stream_pb2.SubscribeCommand(notification_types=[""]))
    codes = [(await stream.recv_kind("error")).code for _ in range(4)]
    assert codes == ["unknown_message_type", "invalid_message", "not_found", "invalid_message"]
    await stream.send(ping=stream_pb2.PingCommand())  # the fifth in a burst of four
    assert (await stream.recv_kind("error")).code == "rate_limited"
    # errors never end the stream
    assert not stream.call.done()


async def test_live_delivery_to_two_sessions_and_isolation(node: Node) -> None:
    a1, a2, b = [await node.connect(u) for u in ("a", "a", "b")]
    for s in (a1, a2, b):
        await s.hello()
    n = await node.create("a", title="for a", data_json='{"n": 1, "big": 12345678901234567890}')
    for s in (a1, a2):
        got = (await s.recv_kind("notification")).notification
        assert got == n
        assert got.data_json == '{"n":1,"big":12345678901234567890}'
    await b.send(ping=stream_pb2.PingCommand())
    assert (await b.recv()).WhichOneof("kind") == "pong", "b received nothing before its pong"


async def test_offline_queue_keeps_newest_100(node: Node) -> None:
    ids = [(await node.create("off", title=str(i))).id for i in range(105)]
    stream = await node.connect("off")
    hello = await stream.hello()
    assert (hello.queued, hello.truncated) == (100, True)
    assert await stream.notifications(100) == ids[5:]
    await stream.send(ping=stream_pb2.PingCommand())
    await stream.recv_kind("pong")  # everything before it was written
    stream.cancel()
    await _until_disconnected(node, "off")

    again = await node.connect("off")
    hello = await again.hello()
    assert (hello.queued, hello.truncated) == (0, False)


async def test_resume_with_since_after_the_queue_was_delivered(node: Node) -> None:
    ids = [(await node.create("r")).id for _ in range(5)]
    first = await node.connect("r")
    assert (await first.hello()).queued == 5
    assert await first.notifications(5) == ids
    first.cancel()
    await _until_disconnected(node, "r")

    resumed = await node.connect("r", since=ids[2])
    hello = await resumed.hello()
    assert (hello.queued, hello.truncated) == (2, False)
    assert await resumed.notifications(2) == ids[3:]


async def test_producer_racing_connects_loses_and_repeats_nothing(node: Node) -> None:
    created: list[int] = []
    underway = asyncio.Event()

    async def produce() -> None:
        for i in range(150):
            created.append((await node.create("race", title=str(i))).id)
            if i == 20:
                underway.set()

    producer = asyncio.create_task(produce())
    await underway.wait()
    stream = await node.connect("race", since=0)
    hello = await stream.hello()
    await producer
    got = await stream.notifications(hello.queued)
    while got[-1] != created[-1]:
        got += await stream.notifications(1)
    assert got == sorted(set(got)), "strictly increasing"
    assert got == created[created.index(got[0]) :], "none missing"
    assert got[0] == created[0] or hello.truncated


async def test_heartbeat_at_the_configured_interval(make_node: NodeFactory) -> None:
    node = await make_node(heartbeat_interval=0.2)
    stream = await node.connect("hb")
    assert (await stream.hello()).heartbeat_interval == pytest.approx(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await stream.recv_kind("heartbeat", timeout=1.0)
    assert loop.time() - start >= 0.5


async def test_filters_as_the_protocol_states(node: Node) -> None:
    await node.create("f", type="a")
    await node.create("f", type="b")
    stream = await node.connect("f", types="a")
    hello = await stream.hello()
    assert hello.queued == 1
    assert (await stream.recv_kind("notification")).notification.type == "a"

    async def sub(kind: str, *types: str) -> stream_pb2.SubscriptionUpdatedEvent:
        cmd = {"notification_types": list(types)}
        if kind == "subscribe":
            await stream.send(subscribe=stream_pb2.SubscribeCommand(**cmd))
        else:
            await stream.send(unsubscribe=stream_pb2.UnsubscribeCommand(**cmd))
        return await stream.recv_kind("subscription_updated")  # type: ignore[no-any-return]

    only_a_c = await sub("subscribe", "c")
    assert list(only_a_c.notification_types) == ["a", "c"]
    nothing = await sub("unsubscribe", "a", "c")
    assert nothing.mode == stream_pb2.FILTER_MODE_ONLY
    assert list(nothing.notification_types) == []
    await node.create("f", type="a")
    await stream.send(ping=stream_pb2.PingCommand())
    assert (await stream.recv()).WhichOneof("kind") == "pong", "an empty list receives nothing"

    fresh = await node.connect("f")
    assert (await fresh.hello()).queued == 0, "the user was online: it is in the inbox only"
    all_but_x = await stream_sub(fresh, "unsubscribe", "x")
    assert all_but_x.mode == stream_pb2.FILTER_MODE_ALL_EXCEPT
    assert list(all_but_x.excluded_types) == ["x"]
    await node.create("f", type="x")
    kept = await node.create("f", type="y")
    assert (await fresh.recv_kind("notification")).notification.id == kept.id
    only_z = await stream_sub(fresh, "subscribe", "z")
    assert (only_z.mode, list(only_z.notification_types)) == (stream_pb2.FILTER_MODE_ONLY, ["z"])


async def stream_sub(stream: object, kind: str, *types: str) -> stream_pb2.SubscriptionUpdatedEvent:
    from tests.grpc.conftest import Stream

    assert isinstance(stream, Stream)
    cmd = stream_pb2.SubscribeCommand(notification_types=list(types))
    if kind == "subscribe":
        await stream.send(subscribe=cmd)
    else:
        await stream.send(unsubscribe=stream_pb2.UnsubscribeCommand(notification_types=list(types)))
    return await stream.recv_kind("subscription_updated")  # type: ignore[no-any-return]


async def test_mark_read_reaches_the_other_sessions_of_the_user(node: Node) -> None:
    s1, s2 = await node.connect("m"), await node.connect("m")
    for s in (s1, s2):
        await s.hello()
    # created while both are live: each receives it (a queued one goes to whichever
    # session replays it first, so it would not do here)
    n = await node.create("m")
    for s in (s1, s2):
        await s.notifications(1)
    reply = await node.users.MarkRead(
        stream_pb2.MarkReadRequest(notification_id=n.id), metadata=auth(token("m"))
    )
    assert reply.notification.read
    assert reply.notification.HasField("read_at")
    for s in (s1, s2):
        assert (await s.recv_kind("notification_marked_read")).notification_id == n.id
    count = await node.users.GetUnreadCount(
        stream_pb2.GetUnreadCountRequest(), metadata=auth(token("m"))
    )
    assert count.unread == 0


async def test_inbox_calls(node: Node) -> None:
    ids = [(await node.create("i", title=str(k))).id for k in range(5)]
    me = auth(token("i"))
    page = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(limit=2), metadata=me
    )
    assert [n.id for n in page.notifications] == ids[:-3:-1]
    assert page.has_more
    rest = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(limit=10, before_id=ids[3]), metadata=me
    )
    assert [n.id for n in rest.notifications] == ids[2::-1]
    assert not rest.has_more
    await node.users.MarkRead(stream_pb2.MarkReadRequest(notification_id=ids[0]), metadata=me)
    unread = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(unread_only=True), metadata=me
    )
    assert [n.id for n in unread.notifications] == ids[:0:-1]


async def test_force_disconnect_ends_streams_with_aborted(node: Node) -> None:
    from tidings.v1 import admin_pb2

    from tests.grpc.conftest import ADMIN

    s1, s2 = await node.connect("d"), await node.connect("d")
    await s1.hello()
    await s2.hello()
    reply = await node.admin.DisconnectUser(
        admin_pb2.DisconnectUserRequest(user_id="d"), metadata=auth(ADMIN)
    )
    assert reply.disconnected == 2
    assert await s1.status() == grpc.StatusCode.ABORTED
    assert await s2.status() == grpc.StatusCode.ABORTED


async def test_slow_client_is_cut_off_and_keeps_its_queue(make_node: NodeFactory) -> None:
    node = await make_node(max_buffer=5)
    stream = await node.connect("slow")
    await stream.hello()
    created: list[int] = []
    # the client does not read: transport buffers fill, then the session's outbox
    while (await node.engine.status("slow")).connected and len(created) < 5000:
        created.append((await node.create("slow", message="x" * 4000)).id)
    assert await stream.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    again = await node.connect("slow", since=None)
    hello = await again.hello()
    assert hello.queued > 0, "what the slow session did not take is still queued"


async def test_shutdown_ends_streams_with_unavailable(node: Node) -> None:
    stream = await node.connect("bye")
    await stream.hello()
    node.engine.close_sessions(
        __import__("server.engine.events").engine.events.CloseReason.SHUTDOWN
    )
    assert await stream.status() == grpc.StatusCode.UNAVAILABLE


async def _until_disconnected(node: Node, user: str) -> None:
    async def gone() -> bool:
        return not (await node.engine.status(user)).connected

    await until(gone)
