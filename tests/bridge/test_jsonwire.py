"""The pure translations: tidings.v1 ⇄ JSON frames, metadata, origins, close codes."""

from __future__ import annotations

import json
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from bridge.jsonwire import (
    FrameCache,
    WireError,
    counts_object,
    decode_command,
    event_frame,
    iso,
    notification_frame,
    notification_object,
    stats_object,
)
from bridge.metadata import BadMetadata, http_metadata, ws_metadata, ws_params
from bridge.origin import OriginPolicy
from bridge.outcomes import ApiError, CloseCode, ending_for
from bridge.upstream import StreamEnded


def ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def note(**fields: Any) -> notification_pb2.Notification:
    values: dict[str, Any] = {
        "id": 7,
        "user_id": "42",
        "type": "application_update",
        "title": "T",
        "message": "M",
        "data_json": '{"a":[1,2.5,{"b":null}],"big":123456789012345678901234567890}',
        "priority": notification_pb2.PRIORITY_HIGH,
        "created_at": ts(1795647127, 123_456_789),
    }
    values.update(fields)
    return notification_pb2.Notification(**values)


def frame_of(message: stream_pb2.ConnectResponse) -> dict[str, Any]:
    framed = event_frame(message, FrameCache())
    assert framed is not None
    kind, text = framed
    value = orjson.loads(text)
    assert value["type"] == kind
    return value  # type: ignore[no-any-return]


# --- values ---------------------------------------------------------------------------------


def test_iso_has_milliseconds_and_z() -> None:
    assert iso(ts(1795647127, 123_456_789)) == "2026-11-25T22:52:07.123Z"
    assert iso(ts(0)) == "1970-01-01T00:00:00.000Z"
    assert iso(ts(1795647127, 999_999_999)) == "2026-11-25T22:52:07.999Z"


def test_notification_object_is_section_3() -> None:
    value = json.loads(orjson.dumps(notification_object(note())))  # json keeps big ints
    assert value == {
        "id": 7,
        "user_id": "42",
        "type": "application_update",
        "title": "T",
        "message": "M",
        "data": {"a": [1, 2.5, {"b": None}], "big": 123456789012345678901234567890},
        "priority": "high",
        "created_at": "2026-11-25T22:52:07.123Z",
        "read": False,
        "read_at": None,
        "seen": False,
        "seen_at": None,
        "archived": False,
        "archived_at": None,
        "expires_at": None,
        "ignore_mutes": False,
    }


def test_seen_archived_expiring_notification_has_its_instants() -> None:
    value = notification_object(
        note(
            seen=True, seen_at=ts(1795647201), archived=True, archived_at=ts(1795647202, 7_000_000),
            expires_at=ts(1795650000), ignore_mutes=True,
        )
    )  # fmt: skip
    assert value["seen"] is True and value["seen_at"] == "2026-11-25T22:53:21.000Z"
    assert value["archived"] is True and value["archived_at"] == "2026-11-25T22:53:22.007Z"
    assert value["expires_at"] == "2026-11-25T23:40:00.000Z"
    assert value["ignore_mutes"] is True


def test_counts_object_lists_types_in_order() -> None:
    counts = stream_pb2.GetCountsResponse(
        unread=3, unseen=1,
        by_type={
            "b": stream_pb2.TypeCounts(unread=1), "a": stream_pb2.TypeCounts(unread=2, unseen=1),
        },
    )  # fmt: skip
    value = counts_object(counts)
    assert value == {
        "unread": 3,
        "unseen": 1,
        "by_type": {"a": {"unread": 2, "unseen": 1}, "b": {"unread": 1, "unseen": 0}},
    }
    assert list(value["by_type"]) == ["a", "b"]


def test_data_is_spliced_not_reencoded() -> None:
    text = orjson.dumps(notification_object(note())).decode()
    assert '"data":{"a":[1,2.5,{"b":null}],"big":123456789012345678901234567890}' in text


def test_empty_data_and_unspecified_priority() -> None:
    value = orjson.loads(
        orjson.dumps(
            notification_object(note(data_json="", priority=notification_pb2.PRIORITY_UNSPECIFIED))
        )
    )
    assert value["data"] == {}
    assert value["priority"] == "normal"


def test_read_notification_has_read_at() -> None:
    value = notification_object(note(read=True, read_at=ts(1795647200, 5_000_000)))
    assert value["read"] is True
    assert value["read_at"] == "2026-11-25T22:53:20.005Z"


def test_stats_object() -> None:
    node = admin_pb2.NodeStats(
        node_id="n1", total_connections=3, unique_users=2, messages_sent=9, uptime_s=1.5, dropped=1
    )
    stats = admin_pb2.GetStatsResponse(
        total_connections=3, unique_users=2, messages_sent=9, queued=4, dropped=1,
        uptime_s=1.5, node_id="n1", nodes=[node],
        cluster=admin_pb2.ClusterStats(total_connections=3, unique_users=2, nodes=1),
    )  # fmt: skip
    assert stats_object(stats) == {
        "total_connections": 3, "unique_users": 2, "messages_sent": 9, "queued": 4,
        "dropped": 1, "uptime_s": 1.5, "node_id": "n1",
        "nodes": [{"node_id": "n1", "total_connections": 3, "unique_users": 2,
                   "messages_sent": 9, "dropped": 1, "uptime_s": 1.5}],
        "cluster": {"total_connections": 3, "unique_users": 2, "nodes": 1},
    }  # fmt: skip


# --- server → client frames -----------------------------------------------------------------


def reference_frame(n: notification_pb2.Notification) -> str:
    return orjson.dumps({"type": "notification", "notification": notification_object(n)}).decode()


def test_frame_cache_gives_every_socket_the_exact_frame() -> None:
    cache = FrameCache()
    first = cache.frame(note())
    assert first == reference_frame(note())
    # An equal message, as another stream would deserialize it, gets the same text.
    assert cache.frame(note()) == first
    read = note(read=True, read_at=ts(1795647200))
    assert cache.frame(read) == reference_frame(read)
    assert orjson.loads(cache.frame(read))["notification"]["read"] is True
    assert cache.frame(note()) == first, "reading it changes the read frame only"


@pytest.mark.parametrize(
    "state",
    [
        {"seen": True, "seen_at": ts(1795647300)},
        {"archived": True, "archived_at": ts(1795647300)},
        {"read": True, "read_at": ts(1795647200), "seen": True, "seen_at": ts(1795647300)},
    ],
)
def test_frame_cache_tells_seen_and_archived_apart(state: dict[str, Any]) -> None:
    cache = FrameCache()
    fresh = cache.frame(note())
    changed = note(**state)
    assert cache.frame(changed) == reference_frame(changed) != fresh
    assert cache.frame(note()) == fresh
    later = note(**{k: ts(1795647400) if k.endswith("_at") else v for k, v in state.items()})
    assert cache.frame(later) == reference_frame(later) != cache.frame(changed)


def test_frame_cache_keeps_expiry_and_ignore_mutes_per_content() -> None:
    cache = FrameCache()
    plain = note(id=1)
    expiring = note(id=2, expires_at=ts(1795650000))
    loud = note(id=3, ignore_mutes=True)
    for n in (plain, expiring, loud, note(id=4, expires_at=ts(1795650001))):
        assert cache.frame(n) == reference_frame(n)


def test_frame_cache_is_bounded_and_stays_exact() -> None:
    cache = FrameCache(frames_size=3, tails_size=2)
    for i in range(1, 40):
        n = note(id=i, title=f"title {i % 5}")
        assert cache.frame(n) == reference_frame(n)
        assert len(cache) <= cache.frames_size + cache.tails_size


def test_notification_frame() -> None:
    message = stream_pb2.ConnectResponse(
        notification=stream_pb2.NotificationEvent(notification=note())
    )
    value = frame_of(message)
    assert value["type"] == "notification"
    assert value["notification"]["id"] == 7


@pytest.mark.parametrize("user_id", ["42", 'q"u\\o\nte', "ü" * 128])
@pytest.mark.parametrize("read", [False, True])
def test_notification_frames_share_content_and_stay_exact(user_id: str, read: bool) -> None:
    extra: dict[str, Any] = {"read": True, "read_at": ts(1795647200, 5_000_000)} if read else {}
    cache = FrameCache()
    for nid in (1, 2, 2**40):
        n = note(id=nid, user_id=user_id, **extra)
        reference = reference_frame(n)
        assert notification_frame(n) == reference
        assert cache.frame(n) == reference
        assert cache.frame(n) == reference, "and again, from the cache"


def test_connection_established_frame() -> None:
    message = stream_pb2.ConnectResponse(
        connection_established=stream_pb2.ConnectionEstablished(
            user_id="42", connection_id="node-1", heartbeat_interval=30.0, queued=2,
            truncated=True, server_time=ts(1795647127, 1_000_000),
        )
    )  # fmt: skip
    assert frame_of(message) == {
        "type": "connection_established",
        "user_id": "42",
        "connection_id": "node-1",
        "heartbeat_interval": 30.0,
        "queued": 2,
        "truncated": True,
        "server_time": "2026-11-25T22:52:07.001Z",
    }


def test_small_frames() -> None:
    heartbeat = stream_pb2.ConnectResponse(heartbeat=stream_pb2.HeartbeatEvent(timestamp=ts(0)))
    assert frame_of(heartbeat) == {"type": "heartbeat", "timestamp": "1970-01-01T00:00:00.000Z"}
    pong = stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent(timestamp=ts(0)))
    assert frame_of(pong) == {"type": "pong", "timestamp": "1970-01-01T00:00:00.000Z"}
    marked = stream_pb2.ConnectResponse(
        notification_marked_read=stream_pb2.NotificationMarkedReadEvent(notification_id=9)
    )
    assert frame_of(marked) == {"type": "notification_marked_read", "notification_id": 9}
    error = stream_pb2.ConnectResponse(error=stream_pb2.ErrorEvent(code="not_found", message="m"))
    assert frame_of(error) == {"type": "error", "code": "not_found", "message": "m"}


def test_subscription_frames_in_both_modes() -> None:
    only = stream_pb2.ConnectResponse(
        subscription_updated=stream_pb2.SubscriptionUpdatedEvent(
            mode=stream_pb2.FILTER_MODE_ONLY, notification_types=["a", "b"]
        )
    )
    assert frame_of(only) == {
        "type": "subscription_updated",
        "notification_types": ["a", "b"],
        "excluded_types": [],
    }
    nothing = stream_pb2.ConnectResponse(
        subscription_updated=stream_pb2.SubscriptionUpdatedEvent(mode=stream_pb2.FILTER_MODE_ONLY)
    )
    assert frame_of(nothing)["notification_types"] == []
    all_but = stream_pb2.ConnectResponse(
        subscription_updated=stream_pb2.SubscriptionUpdatedEvent(
            mode=stream_pb2.FILTER_MODE_ALL_EXCEPT, excluded_types=["x"]
        )
    )
    assert frame_of(all_but) == {
        "type": "subscription_updated",
        "notification_types": None,
        "excluded_types": ["x"],
    }


def test_inbox_event_frames() -> None:
    def message(**kind: Any) -> stream_pb2.ConnectResponse:
        return stream_pb2.ConnectResponse(**kind)

    seen = message(notifications_seen=stream_pb2.NotificationsSeenEvent(up_to_id=12))
    assert frame_of(seen) == {"type": "notifications_seen", "up_to_id": 12}
    every = message(notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(up_to_id=5))
    assert frame_of(every) == {
        "type": "notifications_marked_read", "up_to_id": 5, "notification_type": None,
    }  # fmt: skip
    one_type = message(
        notifications_marked_read=stream_pb2.NotificationsMarkedReadEvent(
            up_to_id=5, notification_type="invoice"
        )
    )
    assert frame_of(one_type)["notification_type"] == "invoice"
    for kind, pb in (
        ("notification_archived", stream_pb2.NotificationArchivedEvent),
        ("notification_unarchived", stream_pb2.NotificationUnarchivedEvent),
        ("notification_deleted", stream_pb2.NotificationDeletedEvent),
    ):
        framed = frame_of(message(**{kind: pb(notification_id=3)}))
        assert framed == {"type": kind, "notification_id": 3}
    counts = message(
        counts=stream_pb2.CountsEvent(
            unread=2, unseen=1, by_type={"x": stream_pb2.TypeCounts(unread=2, unseen=1)}
        )
    )
    assert frame_of(counts) == {
        "type": "counts", "unread": 2, "unseen": 1, "by_type": {"x": {"unread": 2, "unseen": 1}},
    }  # fmt: skip
    prefs = message(preferences_updated=stream_pb2.PreferencesUpdatedEvent(muted_types=["a", "b"]))
    assert frame_of(prefs) == {"type": "preferences_updated", "muted_types": ["a", "b"]}


def test_empty_message_has_no_frame() -> None:
    assert event_frame(stream_pb2.ConnectResponse(), FrameCache()) is None


# --- client → server frames ------------------------------------------------------------------


def test_decode_commands() -> None:
    ping = decode_command('{"type": "ping"}')
    assert isinstance(ping, stream_pb2.ConnectRequest) and ping.WhichOneof("kind") == "ping"
    mark = decode_command(b'{"type": "mark_read", "notification_id": 12}')
    assert isinstance(mark, stream_pb2.ConnectRequest)
    assert mark.mark_read.notification_id == 12
    sub = decode_command('{"type": "subscribe", "notification_types": ["a", "b"]}')
    assert isinstance(sub, stream_pb2.ConnectRequest)
    assert list(sub.subscribe.notification_types) == ["a", "b"]
    unsub = decode_command('{"type": "unsubscribe", "notification_types": []}')
    assert isinstance(unsub, stream_pb2.ConnectRequest)
    assert unsub.WhichOneof("kind") == "unsubscribe"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type": "mark_seen"}',
         stream_pb2.ConnectRequest(mark_seen=stream_pb2.MarkSeenCommand())),
        ('{"type": "mark_seen", "up_to_id": 9}',
         stream_pb2.ConnectRequest(mark_seen=stream_pb2.MarkSeenCommand(up_to_id=9))),
        ('{"type": "mark_seen", "up_to_id": 18446744073709551615}',
         stream_pb2.ConnectRequest(mark_seen=stream_pb2.MarkSeenCommand(up_to_id=2**63 - 1))),
        ('{"type": "mark_all_read"}',
         stream_pb2.ConnectRequest(mark_all_read=stream_pb2.MarkAllReadCommand())),
        ('{"type": "mark_all_read", "notification_type": "x", "up_to_id": 4}',
         stream_pb2.ConnectRequest(
             mark_all_read=stream_pb2.MarkAllReadCommand(notification_type="x", up_to_id=4))),
        ('{"type": "mark_all_read", "notification_type": null}',
         stream_pb2.ConnectRequest(mark_all_read=stream_pb2.MarkAllReadCommand())),
        ('{"type": "archive", "notification_id": 3}',
         stream_pb2.ConnectRequest(archive=stream_pb2.ArchiveCommand(notification_id=3))),
        ('{"type": "unarchive", "notification_id": 3}',
         stream_pb2.ConnectRequest(unarchive=stream_pb2.UnarchiveCommand(notification_id=3))),
        ('{"type": "delete", "notification_id": 3}',
         stream_pb2.ConnectRequest(delete=stream_pb2.DeleteCommand(notification_id=3))),
        ('{"type": "get_counts"}',
         stream_pb2.ConnectRequest(get_counts=stream_pb2.GetCountsCommand())),
        ('{"type": "update_preferences", "muted_types": ["b", "a"]}',
         stream_pb2.ConnectRequest(
             update_preferences=stream_pb2.UpdatePreferencesCommand(muted_types=["b", "a"]))),
    ],
)  # fmt: skip
def test_decode_inbox_commands(frame: str, expected: stream_pb2.ConnectRequest) -> None:
    assert decode_command(frame) == expected


NOT_JSON = "the frame is not valid JSON"
NOT_OBJECT = "the frame must be a JSON object"
NO_TYPE = "the frame has no string 'type'"
BAD_ID = "mark_read: notification_id must be a positive integer"


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("{", "invalid_json", NOT_JSON),
        ('{"type": "ping", "x": NaN}', "invalid_json", NOT_JSON),
        ("null", "invalid_json", NOT_OBJECT),
        ("[]", "invalid_json", NOT_OBJECT),
        ('"ping"', "invalid_json", NOT_OBJECT),
        ('{"type": "nope"}', "unknown_message_type", "unknown message type 'nope'"),
        ('{"type": "' + "x" * 100 + '"}', "unknown_message_type",
         f"unknown message type {'x' * 64!r}"),
        ("{}", "unknown_message_type", NO_TYPE),
        ('{"type": null}', "unknown_message_type", NO_TYPE),
        ('{"type": 5}', "unknown_message_type", NO_TYPE),
        ('{"type": ["ping"]}', "unknown_message_type", NO_TYPE),
        ('{"type": "mark_read"}', "invalid_message", BAD_ID),
        ('{"type": "mark_read", "notification_id": false}', "invalid_message", BAD_ID),
        ('{"type": "mark_read", "notification_id": 3.0}', "invalid_message", BAD_ID),
        ('{"type": "mark_read", "notification_id": "3"}', "invalid_message", BAD_ID),
        ('{"type": "mark_read", "notification_id": 0}', "invalid_message", BAD_ID),
        ('{"type": "mark_read", "notification_id": 9223372036854775808}', "not_found",
         "notification 9223372036854775808 not found"),
        ('{"type": "subscribe", "notification_types": ["a", 1]}', "invalid_message",
         "subscribe: notification_types must be a list of strings"),
        ('{"type": "subscribe"}', "invalid_message",
         "subscribe: notification_types must be a list of strings"),
        ('{"type": "unsubscribe", "notification_types": {"a": 1}}', "invalid_message",
         "unsubscribe: notification_types must be a list of strings"),
        ('{"type": "mark_seen", "up_to_id": -1}', "invalid_message",
         "mark_seen: up_to_id must be a non-negative integer (absent or 0: the newest)"),
        ('{"type": "mark_seen", "up_to_id": "5"}', "invalid_message",
         "mark_seen: up_to_id must be a non-negative integer (absent or 0: the newest)"),
        ('{"type": "mark_all_read", "notification_type": 5}', "invalid_message",
         "mark_all_read: notification_type must be a string (absent or null: every type)"),
        ('{"type": "archive"}', "invalid_message",
         "archive: notification_id must be a positive integer"),
        ('{"type": "unarchive", "notification_id": 0}', "invalid_message",
         "unarchive: notification_id must be a positive integer"),
        ('{"type": "delete", "notification_id": "7"}', "invalid_message",
         "delete: notification_id must be a positive integer"),
        ('{"type": "delete", "notification_id": 9223372036854775808}', "not_found",
         "notification 9223372036854775808 not found"),
        ('{"type": "update_preferences"}', "invalid_message",
         "update_preferences: muted_types must be a list of strings"),
        ('{"type": "update_preferences", "muted_types": "a"}', "invalid_message",
         "update_preferences: muted_types must be a list of strings"),
    ],
)  # fmt: skip
def test_decode_errors(frame: str, code: str, message: str) -> None:
    error = decode_command(frame)
    assert isinstance(error, WireError)
    assert (error.code, error.message) == (code, message)
    assert orjson.loads(error.frame) == {"type": "error", "code": code, "message": message}


def test_unknown_fields_are_ignored() -> None:
    mark = decode_command('{"type": "mark_read", "notification_id": 12, "extra": [1, {}]}')
    assert isinstance(mark, stream_pb2.ConnectRequest)
    assert mark.mark_read.notification_id == 12


# --- metadata ---------------------------------------------------------------------------------


def test_ws_metadata_passes_credentials_and_parameters_through() -> None:
    query = {"token": "abc", "since": "5", "types": "a, b,"}
    assert ws_metadata(query, {}) == (("authorization", "Bearer abc"),)
    params = ws_params(query)
    assert params.since == 5
    assert params.filter.mode == stream_pb2.FILTER_MODE_ONLY
    assert list(params.filter.notification_types) == ["a", "b"]
    assert not ws_params({"types": ""}).HasField("filter")  # empty: every type
    assert not ws_params({}).HasField("since")
    md = ws_metadata({"user_id": "42"}, {"Authorization": "Bearer xyz"})
    assert md == (("authorization", "Bearer xyz"), ("x-tidings-user", "42"))
    assert ws_metadata({}, {"X-Tidings-User": "7"}) == (("x-tidings-user", "7"),)


def test_http_metadata() -> None:
    headers = {"Authorization": "Bearer t", "X-Tidings-User": "9"}
    assert http_metadata(headers) == (("authorization", "Bearer t"), ("x-tidings-user", "9"))
    assert http_metadata({}) == ()


def test_non_ascii_metadata_is_refused() -> None:
    with pytest.raises(BadMetadata) as refused:
        ws_metadata({"user_id": "jörg"}, {})
    assert refused.value.code == "unauthorized"
    with pytest.raises(BadMetadata) as refused:
        ws_params({"since": "yesterday"})
    assert refused.value.code == "invalid_message"
    # Connect parameters travel typed: any text a type name may hold passes.
    assert list(ws_params({"types": "café"}).filter.notification_types) == ["café"]


# --- origins -----------------------------------------------------------------------------------


def test_default_origin_policy_is_same_host() -> None:
    policy = OriginPolicy(())
    assert policy.allows(None, "localhost:8000")
    assert policy.allows("http://localhost:8000", "localhost:8000")
    assert policy.allows("http://LOCALHOST:8000", "localhost:8000")
    assert not policy.allows("http://localhost:9000", "localhost:8000")
    assert not policy.allows("http://evil.example", "localhost:8000")
    assert not policy.allows("null", "localhost:8000")
    assert policy.allows("https://app.example", "app.example")  # behind a TLS proxy
    assert policy.allows("http://app.example", "app.example:80")
    assert not policy.allows("http://app.example", None)


def test_listed_origins() -> None:
    policy = OriginPolicy(("https://app.example", "http://localhost:3000"))
    assert policy.allows(None, "api.example")
    assert policy.allows("https://app.example", "api.example")
    assert policy.allows("https://app.example:443", "api.example")
    assert policy.allows("http://localhost:3000", "api.example")
    assert not policy.allows("http://app.example", "api.example")
    assert not policy.allows("https://api.example", "api.example")
    assert OriginPolicy(("*",)).allows("https://anything.example", "x")


# --- outcomes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "established", "code"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, False, CloseCode.POLICY_VIOLATION),
        (grpc.StatusCode.PERMISSION_DENIED, False, CloseCode.POLICY_VIOLATION),
        (grpc.StatusCode.INVALID_ARGUMENT, False, CloseCode.POLICY_VIOLATION),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True, CloseCode.TRY_AGAIN_LATER),
        (grpc.StatusCode.ABORTED, True, CloseCode.DISCONNECTED),
        (grpc.StatusCode.UNAVAILABLE, True, CloseCode.GOING_AWAY),
        (grpc.StatusCode.UNAVAILABLE, False, CloseCode.INTERNAL_ERROR),
        (grpc.StatusCode.INTERNAL, True, CloseCode.INTERNAL_ERROR),
    ],
)
def test_stream_endings(status: grpc.StatusCode, established: bool, code: CloseCode) -> None:
    ending = ending_for(StreamEnded(status, "why", established=established))
    assert ending.code is code
    assert ending_for(None).code is CloseCode.NORMAL


def test_unauthorized_ending_sends_the_error_first() -> None:
    ending = ending_for(StreamEnded(grpc.StatusCode.UNAUTHENTICATED, "expired", established=False))
    assert ending.error_frame is not None
    assert orjson.loads(ending.error_frame) == {
        "type": "error",
        "code": "unauthorized",
        "message": "expired",
    }


def test_api_error_body() -> None:
    assert ApiError.invalid("title", "title: too long").body == {
        "error": {"code": "invalid_request", "message": "title: too long", "field": "title"}
    }
    assert ApiError.not_found().body == {"error": {"code": "not_found", "message": "not found"}}
