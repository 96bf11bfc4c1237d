"""The inbox calls over gRPC (docs/PROTOCOL.md §7.8): the unary calls, the same commands on
``Connect`` and the events every live session of the user receives, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Node, Stream, auth

pytestmark = pytest.mark.timeout(60)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def later(seconds: float = 3600) -> Timestamp:
    return ts(datetime.now(UTC) + timedelta(seconds=seconds))


def md(user: str) -> tuple[tuple[str, str], ...]:
    return auth(token(user))


async def sessions(node: Node, user: str, count: int = 2) -> list[Stream]:
    """``count`` live sessions of ``user``, greeted, with nothing replayed."""
    opened = []
    for _ in range(count):
        stream = await node.connect(user)
        hello = await stream.hello()
        for _ in range(hello.queued):
            await stream.recv_kind("notification")
        opened.append(stream)
    return opened


async def quiet(stream: Stream) -> None:
    """Nothing but the pong is next: nothing else was pending for ``stream``."""
    await stream.send(ping=stream_pb2.PingCommand())
    await stream.recv_kind("pong")


async def listed(node: Node, user: str, **query: Any) -> list[int]:
    answer = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(**query), metadata=md(user)
    )
    return [n.id for n in answer.notifications]


async def refused(call: Any, code: grpc.StatusCode, field: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value
    trailers = dict(caught.value.trailing_metadata() or ())
    if field is not None:
        assert trailers["tidings-error-field"] == field


# --- create -----------------------------------------------------------------------------------


async def test_create_carries_expiry_and_ignore_mutes(node: Node) -> None:
    expires = later()
    made = await node.create("u1", expires_at=expires, ignore_mutes=True)
    assert made.expires_at == expires and made.ignore_mutes
    assert not (made.seen or made.archived or made.HasField("seen_at"))
    plain = await node.create("u1")
    assert not plain.HasField("expires_at") and not plain.ignore_mutes
    answer = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(), metadata=md("u1")
    )
    assert [(n.id, n.expires_at, n.ignore_mutes) for n in answer.notifications] == [
        (plain.id, Timestamp(), False),
        (made.id, expires, True),
    ]


async def test_an_expiry_not_in_the_future_is_invalid_and_creates_nothing(node: Node) -> None:
    past = ts(datetime.now(UTC) - timedelta(seconds=1))
    request = admin_pb2.CreateNotificationRequest(
        user_id="u1", type="t", title="x", expires_at=past
    )
    await refused(
        node.admin.CreateNotification(request, metadata=auth(ADMIN)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expires_at",
    )
    broadcast = admin_pb2.BroadcastNotificationRequest(
        user_ids=["u1"], type="t", title="x", expires_at=past
    )
    await refused(
        node.admin.BroadcastNotification(broadcast, metadata=auth(ADMIN)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expires_at",
    )
    batch = admin_pb2.CreateNotificationsRequest(notifications=[request])
    await refused(
        node.admin.CreateNotifications(batch, metadata=auth(ADMIN)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "notifications[0].expires_at",
    )
    assert await listed(node, "u1") == []


# --- seen, read all ---------------------------------------------------------------------------


async def test_mark_seen_up_to_an_id_then_the_rest(node: Node) -> None:
    ids = [(await node.create("u1")).id for _ in range(3)]
    other = await node.create("u2")
    streams = await sessions(node, "u1")
    answer = await node.users.MarkSeen(
        stream_pb2.MarkSeenRequest(up_to_id=ids[1]), metadata=md("u1")
    )
    assert (answer.up_to_id, answer.seen) == (ids[1], 2)
    for stream in streams:
        assert (await stream.recv_kind("notifications_seen")).up_to_id == ids[1]
        await quiet(stream)
    assert await listed(node, "u1", seen=True) == ids[1::-1]
    assert await listed(node, "u1", seen=False) == [ids[2]]

    again = await node.users.MarkSeen(stream_pb2.MarkSeenRequest(), metadata=md("u1"))
    assert (again.up_to_id, again.seen) == (ids[2], 1)
    for stream in streams:
        assert (await stream.recv_kind("notifications_seen")).up_to_id == ids[2]
    page = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(), metadata=md("u1")
    )
    assert all(n.seen and n.HasField("seen_at") for n in page.notifications)
    counts = await node.users.GetCounts(stream_pb2.GetCountsRequest(), metadata=md("u1"))
    assert (counts.unread, counts.unseen) == (3, 0)
    assert await listed(node, "u2", seen=False) == [other.id], "another user's are untouched"


async def test_mark_all_read_of_one_type_up_to_an_id(node: Node) -> None:
    a1 = await node.create("u1", type="a")
    b1 = await node.create("u1", type="b")
    a2 = await node.create("u1", type="a")
    streams = await sessions(node, "u1")
    answer = await node.users.MarkAllRead(
        stream_pb2.MarkAllReadRequest(notification_type="a", up_to_id=a2.id - 1),
        metadata=md("u1"),
    )
    assert (answer.up_to_id, answer.read) == (a2.id - 1, 1)
    for stream in streams:
        event = await stream.recv_kind("notifications_marked_read")
        assert (event.up_to_id, event.notification_type) == (a2.id - 1, "a")
        await quiet(stream)
    assert await listed(node, "u1", read=True) == [a1.id]

    everything = await node.users.MarkAllRead(stream_pb2.MarkAllReadRequest(), metadata=md("u1"))
    assert (everything.up_to_id, everything.read) == (a2.id, 2)
    for stream in streams:
        event = await stream.recv_kind("notifications_marked_read")
        assert (event.up_to_id, event.notification_type) == (a2.id, "")
        await quiet(stream)
    assert await listed(node, "u1", read=False) == []
    assert b1.id in await listed(node, "u1", read=True)


async def test_seen_and_read_all_refuse_bad_input(node: Node) -> None:
    await refused(
        node.users.MarkSeen(stream_pb2.MarkSeenRequest(up_to_id=-1), metadata=md("u1")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "up_to_id",
    )
    await refused(
        node.users.MarkAllRead(
            stream_pb2.MarkAllReadRequest(notification_type="x" * 65), metadata=md("u1")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "notification_type",
    )
    await refused(
        node.users.MarkSeen(stream_pb2.MarkSeenRequest()), grpc.StatusCode.UNAUTHENTICATED
    )


# --- archive, delete --------------------------------------------------------------------------


async def test_archive_and_unarchive(node: Node) -> None:
    kept = await node.create("u1")
    filed = await node.create("u1")
    streams = await sessions(node, "u1")
    archived = await node.users.ArchiveNotification(
        stream_pb2.ArchiveNotificationRequest(notification_id=filed.id), metadata=md("u1")
    )
    assert archived.notification.archived and archived.notification.HasField("archived_at")
    for stream in streams:
        assert (await stream.recv_kind("notification_archived")).notification_id == filed.id
        await quiet(stream)
    again = await node.users.ArchiveNotification(
        stream_pb2.ArchiveNotificationRequest(notification_id=filed.id), metadata=md("u1")
    )
    assert again.notification.archived_at == archived.notification.archived_at, "idempotent"
    assert await listed(node, "u1") == [kept.id]
    assert await listed(node, "u1", archived=True) == [filed.id]
    counts = await node.users.GetCounts(stream_pb2.GetCountsRequest(), metadata=md("u1"))
    assert (counts.unread, counts.unseen) == (1, 1)

    back = await node.users.UnarchiveNotification(
        stream_pb2.UnarchiveNotificationRequest(notification_id=filed.id), metadata=md("u1")
    )
    assert not back.notification.archived and not back.notification.HasField("archived_at")
    for stream in streams:
        await stream.recv_kind("notification_archived")  # the idempotent second archive
        assert (await stream.recv_kind("notification_unarchived")).notification_id == filed.id
    assert await listed(node, "u1") == [filed.id, kept.id]


async def test_delete_is_for_good(node: Node) -> None:
    first = await node.create("u1")
    doomed = await node.create("u1")
    streams = await sessions(node, "u1")
    answer = await node.users.DeleteNotification(
        stream_pb2.DeleteNotificationRequest(notification_id=doomed.id), metadata=md("u1")
    )
    assert answer == stream_pb2.DeleteNotificationResponse()
    for stream in streams:
        assert (await stream.recv_kind("notification_deleted")).notification_id == doomed.id
        await quiet(stream)
    assert await listed(node, "u1") == [first.id]
    unread = await node.users.GetUnreadCount(stream_pb2.GetUnreadCountRequest(), metadata=md("u1"))
    assert unread.unread == 1
    resumed = await node.connect("u1", since=0)
    assert (await resumed.hello()).queued == 1
    assert await resumed.notifications(1) == [first.id]
    await refused(
        node.users.DeleteNotification(
            stream_pb2.DeleteNotificationRequest(notification_id=doomed.id), metadata=md("u1")
        ),
        grpc.StatusCode.NOT_FOUND,
    )


@pytest.mark.parametrize(
    "call", ["ArchiveNotification", "UnarchiveNotification", "DeleteNotification"]
)
async def test_another_users_id_is_not_found_and_changes_nothing(node: Node, call: str) -> None:
    theirs = await node.create("u2")
    request = {
        "ArchiveNotification": stream_pb2.ArchiveNotificationRequest,
        "UnarchiveNotification": stream_pb2.UnarchiveNotificationRequest,
        "DeleteNotification": stream_pb2.DeleteNotificationRequest,
    }[call]
    method = getattr(node.users, call)
    for nid in (theirs.id, theirs.id + 1000):
        await refused(
            method(request(notification_id=nid), metadata=md("u1")), grpc.StatusCode.NOT_FOUND
        )
    await refused(
        method(request(notification_id=0), metadata=md("u1")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "notification_id",
    )
    assert await listed(node, "u2") == [theirs.id]


# --- counts, preferences ----------------------------------------------------------------------


async def test_counts_and_mutes(node: Node) -> None:
    await node.create("u1", type="news")
    await node.create("u1", type="news")
    await node.create("u1", type="alert", ignore_mutes=True)
    await node.create("u1", type="chat")
    streams = await sessions(node, "u1")
    prefs = await node.users.UpdatePreferences(
        stream_pb2.UpdatePreferencesRequest(muted_types=["news", "alert", "news"]),
        metadata=md("u1"),
    )
    assert list(prefs.muted_types) == ["alert", "news"]
    for stream in streams:
        event = await stream.recv_kind("preferences_updated")
        assert list(event.muted_types) == ["alert", "news"]
        await quiet(stream)
    stored = await node.users.GetPreferences(stream_pb2.GetPreferencesRequest(), metadata=md("u1"))
    assert list(stored.muted_types) == ["alert", "news"]

    counts = await node.users.GetCounts(stream_pb2.GetCountsRequest(), metadata=md("u1"))
    assert (counts.unread, counts.unseen) == (2, 2), "news muted; the alert ignores mutes"
    assert {k: (v.unread, v.unseen) for k, v in counts.by_type.items()} == {
        "news": (2, 2),
        "alert": (1, 1),
        "chat": (1, 1),
    }
    unread = await node.users.GetUnreadCount(stream_pb2.GetUnreadCountRequest(), metadata=md("u1"))
    assert unread.unread == counts.unread
    assert len(await listed(node, "u1")) == 4, "muted types are still listed"

    # Live: a muted type is not pushed; ignore_mutes is.
    await node.create("u1", type="news")
    loud = await node.create("u1", type="news", ignore_mutes=True)
    chat = await node.create("u1", type="chat")
    for stream in streams:
        assert await stream.notifications(2) == [loud.id, chat.id]


async def test_preferences_refuse_bad_input_and_change_nothing(node: Node) -> None:
    await node.users.UpdatePreferences(
        stream_pb2.UpdatePreferencesRequest(muted_types=["x"]), metadata=md("u1")
    )
    for muted in ([""], ["y" * 65], [f"t{i}" for i in range(257)]):
        await refused(
            node.users.UpdatePreferences(
                stream_pb2.UpdatePreferencesRequest(muted_types=muted), metadata=md("u1")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "muted_types",
        )
    stored = await node.users.GetPreferences(stream_pb2.GetPreferencesRequest(), metadata=md("u1"))
    assert list(stored.muted_types) == ["x"]
    cleared = await node.users.UpdatePreferences(
        stream_pb2.UpdatePreferencesRequest(), metadata=md("u1")
    )
    assert list(cleared.muted_types) == []


# --- list filters -----------------------------------------------------------------------------


async def test_list_filters(node: Node) -> None:
    low = await node.create("u1", type="a", priority=notification_pb2.PRIORITY_LOW)
    high = await node.create("u1", type="b", priority=notification_pb2.PRIORITY_HIGH)
    urgent = await node.create("u1", type="c", priority=notification_pb2.PRIORITY_URGENT)
    await node.users.MarkRead(
        stream_pb2.MarkReadRequest(notification_id=high.id), metadata=md("u1")
    )
    assert await listed(node, "u1", types=["a", "c"]) == [urgent.id, low.id]
    assert await listed(node, "u1", read=True) == [high.id]
    assert await listed(node, "u1", read=False) == [urgent.id, low.id]
    assert await listed(node, "u1", unread_only=True) == [urgent.id, low.id]
    high_up = [notification_pb2.PRIORITY_HIGH, notification_pb2.PRIORITY_URGENT]
    assert await listed(node, "u1", priorities=high_up) == [urgent.id, high.id]
    assert await listed(node, "u1", before_id=urgent.id, limit=1) == [high.id]
    created = low.created_at.ToDatetime(tzinfo=UTC)
    assert low.id not in await listed(node, "u1", created_after=ts(created)), "strict"
    assert await listed(node, "u1", created_after=ts(created - timedelta(seconds=1))) == [
        urgent.id,
        high.id,
        low.id,
    ]
    assert low.id not in await listed(node, "u1", created_before=ts(created)), "strict"
    assert await listed(node, "u1", created_before=ts(created + timedelta(days=1))) == [
        urgent.id,
        high.id,
        low.id,
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"types": [""]}, "type"),
        ({"types": ["x" * 65]}, "type"),
        ({"priorities": [notification_pb2.PRIORITY_UNSPECIFIED]}, "priority"),
        ({"limit": -1}, "limit"),
        ({"created_after": Timestamp(seconds=2**60)}, "created_after"),
    ],
)
async def test_bad_list_filters_are_invalid(node: Node, query: dict[str, Any], field: str) -> None:
    await refused(
        node.users.ListNotifications(
            stream_pb2.ListNotificationsRequest(**query), metadata=md("u1")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


# --- the same on Connect ----------------------------------------------------------------------


async def test_connect_commands_reach_every_session_of_the_user(node: Node) -> None:
    a = await node.create("u1", type="a")
    b = await node.create("u1", type="b")
    mine, other = await sessions(node, "u1")
    stranger = (await sessions(node, "u2", 1))[0]

    await mine.send(mark_seen=stream_pb2.MarkSeenCommand())
    for stream in (mine, other):
        assert (await stream.recv_kind("notifications_seen")).up_to_id == b.id
    await mine.send(mark_all_read=stream_pb2.MarkAllReadCommand(notification_type="a"))
    for stream in (mine, other):
        event = await stream.recv_kind("notifications_marked_read")
        assert (event.up_to_id, event.notification_type) == (b.id, "a")
    await mine.send(archive=stream_pb2.ArchiveCommand(notification_id=a.id))
    await mine.send(unarchive=stream_pb2.UnarchiveCommand(notification_id=a.id))
    await mine.send(delete=stream_pb2.DeleteCommand(notification_id=b.id))
    await mine.send(update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=["z"]))
    for stream in (mine, other):
        assert (await stream.recv_kind("notification_archived")).notification_id == a.id
        assert (await stream.recv_kind("notification_unarchived")).notification_id == a.id
        assert (await stream.recv_kind("notification_deleted")).notification_id == b.id
        assert list((await stream.recv_kind("preferences_updated")).muted_types) == ["z"]

    await mine.send(get_counts=stream_pb2.GetCountsCommand())
    counts = await mine.recv_kind("counts")
    assert (counts.unread, counts.unseen) == (0, 0)
    assert dict(counts.by_type) == {}
    for stream in (other, stranger):
        await quiet(stream)  # counts answer only the asking session; nothing reached u2
    assert await listed(node, "u1") == [a.id]


async def test_connect_commands_answer_errors_and_the_session_goes_on(node: Node) -> None:
    theirs = await node.create("u2")
    (stream,) = await sessions(node, "u1", 1)
    await stream.send(archive=stream_pb2.ArchiveCommand(notification_id=theirs.id))
    await stream.send(unarchive=stream_pb2.UnarchiveCommand(notification_id=theirs.id))
    await stream.send(delete=stream_pb2.DeleteCommand(notification_id=theirs.id))
    await stream.send(delete=stream_pb2.DeleteCommand(notification_id=0))
    await stream.send(mark_seen=stream_pb2.MarkSeenCommand(up_to_id=-5))
    await stream.send(update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=[""]))
    await stream.send(mark_all_read=stream_pb2.MarkAllReadCommand(notification_type="t" * 65))
    codes = [(await stream.recv_kind("error")).code for _ in range(7)]
    assert codes == ["not_found"] * 3 + ["invalid_message"] * 4
    await quiet(stream)
    assert await listed(node, "u2") == [theirs.id]
