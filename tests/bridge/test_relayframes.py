"""``DeliveryFrames``: the frame of a relayed notification, read off its bytes, is the
very text the bridge made by parsing them (``bridge.jsonwire``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tidings.v1 import notification_pb2, stream_pb2

from bridge.jsonwire import FrameCache, notification_frame
from bridge.relayframes import DeliveryFrames
from server.engine.models import Notification, Priority
from server.rpc.convert import delivery_bytes

CREATED = datetime(2026, 11, 29, 12, 30, 1, 234_000, tzinfo=UTC)


def engine_rows() -> list[Notification]:
    """Rows as the engine relays them: one content for several users, and odd ones."""
    rows = [
        Notification(i, f"user-{i}", "news", "Hello", "x" * 200, '{"n":1}', Priority.HIGH, CREATED)
        for i in (1, 2, 127, 128, 16_383, 16_384, 2**40)
    ]
    rows.append(Notification(9, 'ünï "quoted" \\ 💡', "t", "", "", "{}", Priority.LOW, CREATED))
    rows.append(Notification(10, "", "t", "title", "m", '{"a":[1,2]}', Priority.NORMAL, CREATED))
    read_at = datetime(2026, 11, 29, 13, 0, 0, 5_000, tzinfo=UTC)
    rows.append(Notification(11, "u", "t", "r", "m", "{}", Priority.URGENT, CREATED, read_at))
    return rows


def parsed_frame(data: bytes) -> str:
    """The frame as the bridge makes it from the parsed message."""
    return FrameCache().frame(stream_pb2.ConnectResponse.FromString(data).notification.notification)


@pytest.mark.parametrize("memo", [True, False], ids=["content encoded once", "each row alone"])
def test_the_frame_is_the_one_made_by_parsing(memo: bool) -> None:
    frames = DeliveryFrames()
    batch: dict[object, object] | None = {} if memo else None
    for row in engine_rows():
        data = delivery_bytes(row, batch)
        made = frames.frame(data)
        assert made is not None, row
        text, created = made
        assert text == parsed_frame(data)
        assert created == pytest.approx(CREATED.timestamp())


def test_a_content_is_parsed_once_for_all_its_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[bytes] = []
    encode = DeliveryFrames._encode

    def counted(self: DeliveryFrames, rest: bytes) -> tuple[str, float] | None:
        encoded.append(rest)
        return encode(self, rest)

    monkeypatch.setattr(DeliveryFrames, "_encode", counted)
    frames = DeliveryFrames()
    batch: dict[object, object] = {}
    for row in engine_rows()[:7]:  # one content, seven users
        assert frames.frame(delivery_bytes(row, batch)) is not None
    assert len(encoded) == 1


def test_a_message_protobuf_wrote_is_read_the_same() -> None:
    n = notification_pb2.Notification(
        id=5, user_id="u", type="t", title="T", message="m", data_json='{"k":"v"}',
        priority=notification_pb2.PRIORITY_HIGH, read=True,
    )  # fmt: skip
    n.created_at.FromDatetime(CREATED)
    n.read_at.FromDatetime(CREATED)
    data = stream_pb2.ConnectResponse(
        notification=stream_pb2.NotificationEvent(notification=n)
    ).SerializeToString()
    made = DeliveryFrames().frame(data)
    assert made is not None
    assert made[0] == notification_frame(n)


def _field(key: int, payload: bytes) -> bytes:
    return bytes((key, len(payload))) + payload


@pytest.mark.parametrize(
    "data",
    [
        stream_pb2.ConnectResponse(pong=stream_pb2.PongEvent()).SerializeToString(),
        b"",
        b"\x12",
        b"\x12\x05\x0a\x03\x08",  # cut short
        b"\x12\x80",  # a length cut short
        # user_id before id: valid protobuf, not the shape read here
        _field(0x12, _field(0x0A, b"\x12\x01u\x08\x05" + b"\x1a\x01t")),
        # the id again after the content
        _field(0x12, _field(0x0A, b"\x08\x05\x1a\x01t\x08\x06")),
        # a user id that is not UTF-8
        _field(0x12, _field(0x0A, b"\x08\x05\x12\x01\xff\x1a\x01t")),
    ],
    ids=[
        "pong",
        "empty",
        "tag only",
        "cut short",
        "length cut",
        "out of order",
        "id twice",
        "bad utf-8",
    ],
)
def test_anything_else_is_left_to_the_parser(data: bytes) -> None:
    assert DeliveryFrames().frame(data) is None


def test_contents_of_the_same_length_are_told_apart() -> None:
    """Two broadcasts interleaved, their contents the same length: each frame keeps its own."""
    frames = DeliveryFrames()
    batch: dict[object, object] = {}
    rows = [
        Notification(i, f"user-{i}", "news", title, "m" * 50, "{}", Priority.NORMAL, CREATED)
        for i in range(1, 7)
        for title in ("AAAA", "BBBB")
    ]
    for row in rows:
        data = delivery_bytes(row, batch)
        made = frames.payload(data)
        assert made is not None
        assert made[0].decode() == parsed_frame(data)


@pytest.mark.parametrize("nid", [2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28, 2**63 - 1])
def test_ids_of_every_varint_length_are_read_as_the_parser_reads_them(nid: int) -> None:
    row = Notification(nid, "user", "news", "Hello", "m", "{}", Priority.HIGH, CREATED)
    data = delivery_bytes(row, {})
    made = DeliveryFrames().frame(data)
    assert made is not None
    assert made[0] == parsed_frame(data)
