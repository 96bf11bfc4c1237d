"""Every WebSocket frame the bridge writes, and every example of docs/PROTOCOL.md §5, holds
to the pydantic models of ``bridge.wsschemas`` (whose JSON Schema is what we document)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from tidings.v1 import notification_pb2, stream_pb2

from bridge import wsschemas
from bridge.jsonwire import FrameCache, WireError, decode_command, error_frame, event_frame

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
WHEN = Timestamp(seconds=1795647127, nanos=123_456_789)


def examples(section: str) -> list[dict[str, Any]]:
    """The JSON objects of the ```json blocks of one section of docs/PROTOCOL.md."""
    text = PROTOCOL.read_text()
    start = text.index(f"### {section} ")
    body = text[start : text.index("\n### ", start + 1)]
    found: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for block in re.findall(r"```json\n(.*?)```", body, re.DOTALL):
        at = 0
        while (at := _skip_space(block, at)) < len(block):
            value, at = decoder.raw_decode(block, at)
            found.append(value)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def note(**fields: Any) -> notification_pb2.Notification:
    values: dict[str, Any] = {
        "id": 7, "user_id": "42", "type": "t", "title": "T", "message": "",
        "data_json": '{"big":123456789012345678901234567890,"nested":[{"a":null}]}',
        "priority": notification_pb2.PRIORITY_URGENT, "created_at": WHEN,
    }  # fmt: skip
    values.update(fields)
    return notification_pb2.Notification(**values)


#: One server message of every kind the engine sends, some in more than one shape.
MESSAGES = [
    stream_pb2.ConnectResponse(
        connection_established=stream_pb2.ConnectionEstablished(
            user_id="42", connection_id="n-1", heartbeat_interval=30.0, queued=3,
            truncated=True, server_time=WHEN,
        )
    ),
    stream_pb2.ConnectResponse(notification=stream_pb2.NotificationEvent(notification=note())),
    stream_pb2.ConnectResponse(
        notification=stream_pb2.NotificationEvent(
            notification=note(
                read=True, read_at=WHEN, priority=notification_pb2.PRIORITY_UNSPECIFIED
            )
        )
    ),
    stream_pb2.ConnectResponse(heartbeat=stream_pb2.HeartbeatEvent(timestamp=WHEN)),
    stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent(timestamp=Timestamp())),
    stream_pb2.ConnectResponse(
        notification_marked_read=stream_pb2.NotificationMarkedReadEvent(notification_id=2**63 - 1)
    ),
    stream_pb2.ConnectResponse(
        subscription_updated=stream_pb2.SubscriptionUpdatedEvent(
            mode=stream_pb2.FILTER_MODE_ONLY, notification_types=["a", "b"]
        )
    ),
    stream_pb2.ConnectResponse(
        subscription_updated=stream_pb2.SubscriptionUpdatedEvent(
            mode=stream_pb2.FILTER_MODE_ALL_EXCEPT, excluded_types=["x"]
        )
    ),
    stream_pb2.ConnectResponse(error=stream_pb2.ErrorEvent(code="rate_limited", message="slow")),
    stream_pb2.ConnectResponse(token_expiring=stream_pb2.TokenExpiringEvent(expires_at=WHEN)),
    stream_pb2.ConnectResponse(token_refreshed=stream_pb2.TokenRefreshedEvent(expires_at=WHEN)),
    stream_pb2.ConnectResponse(token_refreshed=stream_pb2.TokenRefreshedEvent()),
    stream_pb2.ConnectResponse(
        notification=stream_pb2.NotificationEvent(
            notification=note(
                seen=True, seen_at=WHEN, archived=True, archived_at=WHEN, expires_at=WHEN,
                ignore_mutes=True,
            )
        )
    ),
    stream_pb2.ConnectResponse(notifications_seen=stream_pb2.NotificationsSeenEvent(up_to_id=9)),
    stream_pb2.ConnectResponse(
        notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(up_to_id=9)
    ),
    stream_pb2.ConnectResponse(
        notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(
            up_to_id=9, notification_type="invoice"
        )
    ),
    stream_pb2.ConnectResponse(
        notification_archived=stream_pb2.NotificationArchivedEvent(notification_id=3)
    ),
    stream_pb2.ConnectResponse(
        notification_unarchived=stream_pb2.NotificationUnarchivedEvent(notification_id=3)
    ),
    stream_pb2.ConnectResponse(
        notification_deleted=stream_pb2.NotificationDeletedEvent(notification_id=3)
    ),
    stream_pb2.ConnectResponse(counts=stream_pb2.CountsEvent()),
    stream_pb2.ConnectResponse(
        counts=stream_pb2.CountsEvent(
            unread=4, unseen=2, by_type={"a": stream_pb2.TypeCounts(unread=4, unseen=2)}
        )
    ),
    stream_pb2.ConnectResponse(preferences_updated=stream_pb2.PreferencesUpdatedEvent()),
    stream_pb2.ConnectResponse(
        preferences_updated=stream_pb2.PreferencesUpdatedEvent(muted_types=["a", "b"])
    ),
]  # fmt: skip


#: Every client message type: one per ConnectRequest kind, named alike.
CLIENT_TYPES = (
    "ping", "mark_read", "subscribe", "unsubscribe", "refresh", "mark_seen", "mark_all_read",
    "archive", "unarchive", "delete", "get_counts", "update_preferences",
)  # fmt: skip


def test_every_kind_of_server_message_is_covered() -> None:
    kinds = {f.name for f in stream_pb2.ConnectResponse.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert {m.WhichOneof("kind") for m in MESSAGES} == kinds


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.WhichOneof("kind"))
def test_server_frames_hold_to_their_schema(message: stream_pb2.ConnectResponse) -> None:
    cache = FrameCache()
    for _ in range(2):  # encoded, then from the cache
        framed = event_frame(message, cache)
        assert framed is not None
        kind, text = framed
        event = wsschemas.ServerMessage.validate_json(text, strict=True)
        assert event.type == kind


def test_error_frames_hold_to_their_schema() -> None:
    for frame in (
        "{", "[]", "{}", '{"type": "x"}', '{"type": "mark_read"}', '{"type": "archive"}',
        '{"type": "mark_seen", "up_to_id": -1}', '{"type": "update_preferences"}',
    ):  # fmt: skip
        error = decode_command(frame)
        assert isinstance(error, WireError)
        wsschemas.ServerMessage.validate_json(error.frame, strict=True)
    wsschemas.ServerMessage.validate_json(error_frame("unauthorized", "no token"), strict=True)


def test_the_schema_refuses_what_a_client_could_not_rely_on() -> None:
    wrong = [
        '{"type": "pong", "timestamp": "2026-11-25T22:52:07Z"}',
        '{"type": "notification_marked_read", "notification_id": "5"}',
        '{"type": "error", "code": "x", "message": "m", "extra": 1}',
        '{"type": "surprise"}',
    ]
    for text in wrong:
        with pytest.raises(ValidationError):
            wsschemas.ServerMessage.validate_json(text, strict=True)


def test_the_documented_server_examples_hold() -> None:
    documented = examples("5.2")
    kinds = wsschemas.ServerMessage.json_schema()["discriminator"]["mapping"]
    assert {e["type"] for e in documented} == set(kinds)
    for example in documented:
        wsschemas.ServerMessage.validate_python(example, strict=True)


def test_the_documented_client_examples_are_commands() -> None:
    documented = examples("5.3")
    assert {e["type"] for e in documented} == set(CLIENT_TYPES)
    for example in documented:
        wsschemas.ClientMessage.validate_python(example)
        assert not isinstance(decode_command(json.dumps(example)), WireError)


def test_the_json_schema_can_be_emitted() -> None:
    schema = wsschemas.json_schema()
    text = json.dumps(schema)
    assert set(schema["client"]["discriminator"]["mapping"]) == set(CLIENT_TYPES)
    assert "connection_established" in text and "notification_marked_read" in text


def test_every_kind_of_client_message_has_a_command() -> None:
    kinds = {f.name for f in stream_pb2.ConnectRequest.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert kinds == set(CLIENT_TYPES)
