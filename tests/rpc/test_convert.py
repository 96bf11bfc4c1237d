"""Domain ⇄ tidings.v1 translation, and the shared-content fast path of deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tidings.v1 import stream_pb2

from server.engine import events
from server.engine.models import Notification, Priority
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


@pytest.mark.parametrize("sid", [0, 1, 127, 128, 2**63])
def test_relay_frames_are_what_protobuf_writes(sid: int) -> None:
    from tidings.v1 import relay_pb2

    from server.rpc import wire

    event = b"\x12\x03abc" * 50
    reference = relay_pb2.RelayResponse(
        frames=[relay_pb2.RelayFrame(session_id=sid, event=event)]
    ).SerializeToString()
    assert wire.relay_event_frame(sid, event) == reference
