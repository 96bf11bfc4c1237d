"""What ``Publisher.create`` builds and reads back, without a server: idempotency keys,
priorities, timestamps and the caller's metadata."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tidings.client import NewNotification, Priority
from tidings.client.channel import Identity
from tidings.client.convert import _time, parse_data, priority_to_pb
from tidings.client.publisher import _create_request
from tidings.v1 import notification_pb2

pytestmark = pytest.mark.timeout(30)


def test_a_create_without_a_key_gets_a_fresh_one_and_keeps_a_given_one() -> None:
    first = _create_request(NewNotification(user_id=7, type="t", title="x"))
    second = _create_request(NewNotification(user_id=7, type="t", title="x"))
    assert first.idempotency_key != second.idempotency_key
    assert uuid.UUID(first.idempotency_key).version == 4
    assert first.user_id == "7"
    given = _create_request(NewNotification(user_id="u", type="t", title="x", idempotency_key="k"))
    assert given.idempotency_key == "k"


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        (Priority.LOW, notification_pb2.PRIORITY_LOW),
        ("normal", notification_pb2.PRIORITY_NORMAL),
        (Priority.HIGH, notification_pb2.PRIORITY_HIGH),
        ("urgent", notification_pb2.PRIORITY_URGENT),
    ],
)
def test_priorities_map_by_member_or_value(given: Priority | str, wanted: int) -> None:
    assert priority_to_pb(given) == wanted


@pytest.mark.parametrize("bad", ["bogus", "HIGH", "", ["high"], None])
def test_anything_else_is_refused_as_priority_refuses_it(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a valid Priority"):
        priority_to_pb(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1, 999_999_999),
        (-1, 500),
        (-62_135_596_800, 0),  # 0001-01-01
        (253_402_300_799, 999_999_999),  # 9999-12-31T23:59:59.999999999
        (1_764_460_000, 123_456_789),
    ],
)
def test_timestamps_read_as_protobuf_reads_them(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    ours, theirs = _time(ts), ts.ToDatetime(tzinfo=UTC)
    assert ours == theirs
    assert ours.tzinfo is theirs.tzinfo
    assert isinstance(ours, datetime)


@pytest.mark.parametrize(
    ("data_json", "data"),
    [("", {}), ("{}", {}), ('{"a":1}', {"a": 1}), ("[1]", {}), ("nope", {})],
)
def test_data_reads_as_an_object_or_empty(data_json: str, data: dict[str, object]) -> None:
    assert parse_data(data_json) == data
    assert parse_data(data_json) is not parse_data(data_json)  # each caller its own dict


def test_a_fixed_identity_sends_the_same_metadata_and_a_token_callable_is_asked_each_call() -> None:
    fixed = Identity(token="abc", user="7")
    assert fixed.metadata() == (("authorization", "Bearer abc"), ("x-tidings-user", "7"))
    assert fixed.metadata() is fixed.metadata()
    assert Identity().metadata() == ()
    asked: list[int] = []

    def token() -> str:
        asked.append(1)
        return f"t{len(asked)}"

    fresh = Identity(token=token)
    assert fresh.metadata() == (("authorization", "Bearer t1"),)
    assert fresh.metadata() == (("authorization", "Bearer t2"),)
    assert len(asked) == 2
    assert Identity(token="abc") == Identity(token="abc")
