"""Domain ⇄ tidings.v1 translation, and the shared-content fast path of deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from server.engine import events
from server.engine.errors import InvalidArgument
from server.engine.models import Counts, InboxQuery, Notification, Priority, TypeCounts
from server.rpc import convert

WHEN = datetime(2026, 11, 25, 22, 52, 7, 123000, tzinfo=UTC)


def reference(n: Notification) -> bytes:
    return stream_pb2.ConnectResponse(
        notification=stream_pb2.NotificationEvent(notification=convert.notification_to_pb(n))
    ).SerializeToString()


@pytest.mark.parametrize("nid", [1, 127, 128, 300, 2**40, 2**63 - 1])
@pytest.mark.parametrize(
    ("user", "message", "data"),
    [
        ("42", "", "{}"),
        ('ü"x', "hello " * 500, '{"a":[1,2,{"b":null}]}'),
        ("u" * 128, "m", '{"n":12345678901234567890}'),
    ],
)
def test_delivery_bytes_are_what_protobuf_writes(
    nid: int, user: str, message: str, data: str
) -> None:
    n = Notification(nid, user, "t", "title", message, data, Priority.URGENT, WHEN)
    batch: dict[object, object] = {}
    assert convert.delivery_bytes(n) == reference(n)
    assert convert.delivery_bytes(n, batch) == reference(n)
    assert convert.delivery_bytes(n, batch) == reference(n), "and again, from the batch memo"
    other = n._replace(id=nid // 2 + 1, user_id=user + "2")
    assert convert.delivery_bytes(other, batch) == reference(other), "another recipient"


def test_read_notifications_take_the_plain_path() -> None:
    n = Notification(9, "u", "t", "x", "", "{}", Priority.LOW, WHEN, read_at=WHEN)
    assert convert.delivery_bytes(n) == reference(n)
    decoded = stream_pb2.ConnectResponse.FromString(convert.delivery_bytes(n))
    assert convert.notification_from_pb(decoded.notification.notification) == n


@pytest.mark.parametrize(
    "state",
    [
        {"seen_at": WHEN},
        {"archived_at": WHEN},
        {"read_at": WHEN, "seen_at": WHEN, "archived_at": WHEN},
        {"expires_at": WHEN + timedelta(days=1)},
        {"ignore_mutes": True},
        {"expires_at": WHEN + timedelta(days=1), "ignore_mutes": True},
    ],
)
def test_the_inbox_fields_travel_both_ways(state: dict[str, Any]) -> None:
    n = Notification(9, "u", "t", "x", "", "{}", Priority.LOW, WHEN)._replace(**state)
    batch: dict[object, object] = {}
    assert convert.delivery_bytes(n) == reference(n)
    assert convert.delivery_bytes(n, batch) == reference(n)
    decoded = stream_pb2.ConnectResponse.FromString(convert.delivery_bytes(n, batch))
    pb = decoded.notification.notification
    assert convert.notification_from_pb(pb) == n
    assert (pb.seen, pb.archived) == (n.seen, n.archived)
    assert pb.HasField("expires_at") == (n.expires_at is not None)


def test_expiry_and_ignore_mutes_are_part_of_the_shared_content() -> None:
    base = Notification(1, "a", "t", "x", "", "{}", Priority.LOW, WHEN)
    later = WHEN + timedelta(days=1)
    rows = [
        base,
        base._replace(id=2, user_id="b", expires_at=later),
        base._replace(id=3, user_id="c", ignore_mutes=True),
        base._replace(id=4, user_id="d", expires_at=later + timedelta(seconds=1)),
    ]
    batch: dict[object, object] = {}
    for n in rows:
        assert convert.delivery_bytes(n, batch) == reference(n)


def ts(moment: datetime) -> Timestamp:
    return convert.timestamp(moment)


def test_list_request_becomes_the_engine_query() -> None:
    request = stream_pb2.ListNotificationsRequest(
        unread_only=False, limit=20, before_id=99, types=["b", "a"], read=True, seen=False,
        archived=True, priorities=[notification_pb2.PRIORITY_HIGH, notification_pb2.PRIORITY_LOW],
        created_after=ts(WHEN), created_before=ts(WHEN + timedelta(hours=1)),
    )  # fmt: skip
    query = convert.query_from_pb(request)
    assert query == InboxQuery(
        read=True, seen=False, archived=True, types=("a", "b"),
        priorities=(Priority.HIGH, Priority.LOW), created_after=WHEN,
        created_before=WHEN + timedelta(hours=1), limit=20, before_id=99,
    )  # fmt: skip


def test_an_empty_list_request_is_the_default_query() -> None:
    query = convert.query_from_pb(stream_pb2.ListNotificationsRequest())
    assert query == InboxQuery()
    assert (query.read, query.seen, query.archived, query.before_id) == (None, None, False, None)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"priorities": [notification_pb2.PRIORITY_UNSPECIFIED]}, "priority"),
        ({"priorities": [17]}, "priority"),
        ({"types": [""]}, "type"),
        ({"types": ["x" * 65]}, "type"),
        ({"created_after": Timestamp(seconds=2**60)}, "created_after"),
        ({"created_before": Timestamp(seconds=-(2**60))}, "created_before"),
    ],
)
def test_bad_list_requests_name_the_query_field(
    request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.query_from_pb(stream_pb2.ListNotificationsRequest(**request_fields))  # type: ignore[arg-type]
    assert caught.value.field == field


def test_create_carries_expiry_and_ignore_mutes() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    request = admin_pb2.CreateNotificationRequest(
        user_id="u", type="t", title="x", expires_at=ts(later), ignore_mutes=True
    )
    content = convert.content_from_pb(request)
    assert content.expires_at is not None
    assert abs(content.expires_at - later) < timedelta(milliseconds=1)
    assert content.ignore_mutes is True
    plain = convert.content_from_pb(admin_pb2.CreateNotificationRequest(type="t", title="x"))
    assert (plain.expires_at, plain.ignore_mutes) == (None, False)


def test_create_refuses_an_expiry_no_timestamp_can_hold() -> None:
    # "Later than now" is the engine's to judge, by its clock (tests/grpc/test_inbox.py).
    moment = Timestamp(seconds=2**60)
    request = admin_pb2.BroadcastNotificationRequest(type="t", title="x", expires_at=moment)
    with pytest.raises(InvalidArgument) as caught:
        convert.content_from_pb(request)
    assert caught.value.field == "expires_at"


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        (stream_pb2.ConnectRequest(mark_seen=stream_pb2.MarkSeenCommand()), events.MarkSeen(None)),
        (stream_pb2.ConnectRequest(mark_seen=stream_pb2.MarkSeenCommand(up_to_id=4)),
         events.MarkSeen(4)),
        (stream_pb2.ConnectRequest(mark_all_read=stream_pb2.MarkAllReadCommand()),
         events.MarkAllRead(None, None)),
        (stream_pb2.ConnectRequest(
            mark_all_read=stream_pb2.MarkAllReadCommand(notification_type="x", up_to_id=3)),
         events.MarkAllRead("x", 3)),
        (stream_pb2.ConnectRequest(archive=stream_pb2.ArchiveCommand(notification_id=5)),
         events.Archive(5)),
        (stream_pb2.ConnectRequest(unarchive=stream_pb2.UnarchiveCommand(notification_id=5)),
         events.Unarchive(5)),
        (stream_pb2.ConnectRequest(delete=stream_pb2.DeleteCommand(notification_id=5)),
         events.Delete(5)),
        (stream_pb2.ConnectRequest(get_counts=stream_pb2.GetCountsCommand()), events.GetCounts()),
        (stream_pb2.ConnectRequest(
            update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=["b", "a"])),
         events.UpdatePreferences(("b", "a"))),
    ],
)  # fmt: skip
def test_inbox_commands(kind: stream_pb2.ConnectRequest, command: events.Command) -> None:
    assert convert.command_from_pb(kind) == command


def test_every_command_kind_is_known() -> None:
    for field in stream_pb2.ConnectRequest.DESCRIPTOR.oneofs_by_name["kind"].fields:
        if field.name == "refresh":
            continue
        message = stream_pb2.ConnectRequest()
        getattr(message, field.name).SetInParent()
        assert not isinstance(convert.command_from_pb(message), events.UnknownCommand), field.name


def test_inbox_events() -> None:
    counts = Counts(3, 1, {"a": TypeCounts(2, 1), "b": TypeCounts(1, 0)})
    cases: list[tuple[events.Event, stream_pb2.ConnectResponse]] = [
        (events.NotificationsSeen(7),
         stream_pb2.ConnectResponse(notifications_seen=stream_pb2.NotificationsSeenEvent(up_to_id=7))),
        (events.NotificationsMarkedRead(7, None),
         stream_pb2.ConnectResponse(
             notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(up_to_id=7))),
        (events.NotificationsMarkedRead(7, "x"),
         stream_pb2.ConnectResponse(
             notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(
                 up_to_id=7, notification_type="x"))),
        (events.NotificationArchived(2),
         stream_pb2.ConnectResponse(
             notification_archived=stream_pb2.NotificationArchivedEvent(notification_id=2))),
        (events.NotificationUnarchived(2),
         stream_pb2.ConnectResponse(
             notification_unarchived=stream_pb2.NotificationUnarchivedEvent(notification_id=2))),
        (events.NotificationDeleted(2),
         stream_pb2.ConnectResponse(
             notification_deleted=stream_pb2.NotificationDeletedEvent(notification_id=2))),
        (events.CountsEvent(counts),
         stream_pb2.ConnectResponse(
             counts=stream_pb2.CountsEvent(
                 unread=3, unseen=1,
                 by_type={"a": stream_pb2.TypeCounts(unread=2, unseen=1),
                          "b": stream_pb2.TypeCounts(unread=1)}))),
        (events.PreferencesUpdated(("a", "b")),
         stream_pb2.ConnectResponse(
             preferences_updated=stream_pb2.PreferencesUpdatedEvent(muted_types=["a", "b"]))),
    ]  # fmt: skip
    for event, expected in cases:
        assert convert.event_to_pb(event) == expected
    by_type = cases[6][1].counts.by_type
    assert convert.counts_to_pb(counts) == stream_pb2.GetCountsResponse(
        unread=3, unseen=1, by_type=by_type
    )


def test_each_row_of_a_mixed_commit_reaches_its_session_as_itself() -> None:
    """The envelopes of one commit share a memo; no row takes another's content."""
    base = Notification(1, "user 0", "a", "title", "m", "{}", Priority.NORMAL, WHEN)
    contents = [
        base,
        base._replace(type="b"),
        base._replace(title="other title"),
        base._replace(message="other message"),
        base._replace(data_json='{"x":1}'),
        base._replace(priority=Priority.HIGH),
    ]
    rows = [contents[i % len(contents)]._replace(id=i + 1, user_id=f"user {i}") for i in range(18)]
    batch: dict[object, object] = {}
    for n in rows:
        framed = convert.event_to_pb(events.Delivery(events.Envelope(n, batch=batch)))
        assert isinstance(framed, bytes)
        assert framed == reference(n)
        decoded = stream_pb2.ConnectResponse.FromString(framed).notification.notification
        assert convert.notification_from_pb(decoded) == n


@pytest.mark.parametrize("nid", [1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**40])
@pytest.mark.parametrize("user", ["u", "ü-ser ☃", "x" * 200])
def test_a_delivery_is_what_protobuf_writes_for_any_id_and_user(nid: int, user: str) -> None:
    """The id and user id are framed by hand: every varint width, UTF-8, long ids."""
    n = Notification(nid, user, "a", "t" * 300, "m", "{}", Priority.NORMAL, WHEN)
    batches: tuple[dict[object, object] | None, ...] = (None, {})
    for batch in batches:
        assert convert.delivery_bytes(n, batch) == reference(n)


@pytest.mark.parametrize("sid", [0, 1, 127, 128, 2**63])
def test_relay_frames_are_what_protobuf_writes(sid: int) -> None:
    from tidings.v1 import relay_pb2

    from server.rpc import wire

    event = b"\x12\x03abc" * 50
    reference = relay_pb2.RelayResponse(
        frames=[relay_pb2.RelayFrame(session_id=sid, event=event)]
    ).SerializeToString()
    assert wire.relay_event_frame(sid, event) == reference


def test_unread_only_with_read_true_selects_nothing_once_found_valid() -> None:
    both = stream_pb2.ListNotificationsRequest(unread_only=True, read=True)
    assert convert.query_from_pb(both) is None
    agree = stream_pb2.ListNotificationsRequest(unread_only=True, read=False)
    assert convert.query_from_pb(agree) == InboxQuery(unread_only=True, read=False)
    with pytest.raises(InvalidArgument):
        convert.query_from_pb(
            stream_pb2.ListNotificationsRequest(unread_only=True, read=True, types=[""])
        )


@pytest.mark.parametrize("priority", list(Priority))
@pytest.mark.parametrize("expires", [None, WHEN + timedelta(days=1)])
@pytest.mark.parametrize("ignore_mutes", [False, True])
def test_every_priority_and_option_of_a_broadcast_row(
    priority: Priority, expires: datetime | None, ignore_mutes: bool
) -> None:
    n = Notification(
        70_000, "ü", "tÿpe", "☃ title", "m", '{"k":"ö"}', priority, WHEN,
        expires_at=expires, ignore_mutes=ignore_mutes,
    )  # fmt: skip
    batch: dict[object, object] = {}
    for row in (n, n._replace(id=70_001, user_id="v"), n._replace(id=70_002, user_id="")):
        assert convert.delivery_bytes(row, batch) == reference(row)


@pytest.mark.parametrize("length", [*range(100, 140), *range(1_990, 2_070), 20_000, 70_000])
def test_every_length_of_the_enclosing_prefixes(length: int) -> None:
    """The prefixes come from tables below 2 048 bytes and are computed above."""
    n = Notification(20_000, "u-1", "t", "", "é" * (length // 2), "{}", Priority.LOW, WHEN)
    batch: dict[object, object] = {}
    assert convert.delivery_bytes(n, batch) == reference(n)
    data = n._replace(id=20_001, user_id="u-22", data_json='{"a":"' + "x" * (length % 7) + '"}')
    assert convert.delivery_bytes(data, batch) == reference(data)


def test_a_read_row_after_an_unread_one_of_the_same_content_is_itself() -> None:
    """The memo of a commit's last row never stands in for a row read, seen or archived."""
    n = Notification(5, "u", "t", "x", "m", "{}", Priority.NORMAL, WHEN)
    batch: dict[object, object] = {}
    assert convert.delivery_bytes(n, batch) == reference(n)
    for other in (
        n._replace(id=6, read_at=WHEN),
        n._replace(id=7, seen_at=WHEN),
        n._replace(id=8, archived_at=WHEN),
    ):
        assert convert.delivery_bytes(other, batch) == reference(other)


def test_the_user_field_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    fields: dict[str, bytes] = {}
    monkeypatch.setattr(convert, "_USER_FIELDS", fields)
    monkeypatch.setattr(convert, "_USER_FIELDS_MAX", 3)
    batch: dict[object, object] = {}
    for i in range(10):
        n = Notification(i + 1, f"user {i}", "t", "x", "m", "{}", Priority.NORMAL, WHEN)
        assert convert.delivery_bytes(n, batch) == reference(n)
        assert len(fields) <= 3
