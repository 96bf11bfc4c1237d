"""A relayed notification → its §5 frame text, without parsing protobuf per recipient.

The engine writes a delivery as ``ConnectResponse{notification{id, user_id, rest}}``
with ``id`` and ``user_id`` first and ``rest`` (type … created_at, read state) byte for
byte the same for every recipient of one content (``server.rpc.convert.delivery_bytes``;
protobuf's canonical field order puts them first for any serializer). A broadcast to
N users is N such frames that differ only in their first bytes.

``DeliveryFrames`` reads the two length prefixes, the id and the user id off the
front itself, and keeps the JSON of ``rest`` by its bytes: ``rest`` is parsed and
encoded once per content, and each recipient's frame is that text plus its id and
user id — the same text ``bridge.jsonwire`` makes. A frame of any other shape (fields
out of order, a read notification written differently) is not recognised: the caller
parses it as before.
"""

from __future__ import annotations

from typing import Final

import orjson
from google.protobuf.message import DecodeError
from tidings.v1 import notification_pb2

from bridge.jsonwire import INT64_MAX, notification_object

#: Keys of the fields read here (field number << 3 | wire type).
_CONNECT_RESPONSE_NOTIFICATION: Final = 0x12  # ConnectResponse.notification = 2
_NOTIFICATION_EVENT_NOTIFICATION: Final = 0x0A  # NotificationEvent.notification = 1
_ID: Final = 0x08  # Notification.id = 1, varint
_USER_ID: Final = 0x12  # Notification.user_id = 2, length-delimited

#: A recipient's frame: its id and user id spliced in before the content's JSON.
_PAYLOAD: Final = b'{"type":"notification","notification":{"id":%d,"user_id":%b,%b'
#: A content's JSON after the user id (closing the frame), as text; its creation time
#: (a POSIX timestamp); the same JSON as UTF-8 bytes.
_Rest = tuple[str, float, bytes]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; ``IndexError`` if cut short."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    second = data[pos + 1]
    if second < 0x80:  # a frame's lengths (128 B to 16 KiB)
        return (byte & 0x7F) | (second << 7), pos + 2
    value, shift, pos = (byte & 0x7F) | ((second & 0x7F) << 7), 14, pos + 2
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


class DeliveryFrames:
    """The JSON of recent notification contents, shared by every socket of one bridge.

    Two bounded maps, each starting over when full: the encoded ``rest`` of a content
    (with its creation time), and the JSON string of a user id.
    """

    __slots__ = ("_last", "_rests", "_users", "rests_size", "users_size")

    def __init__(self, rests_size: int = 512, users_size: int = 4096) -> None:
        self._rests: dict[bytes, _Rest] = {}
        self._last: tuple[bytes, _Rest] | None = None  # the rest read last, and its JSON
        self._users: dict[bytes, tuple[str, bytes]] = {}  # the JSON string, as text and bytes
        self.rests_size = rests_size
        self.users_size = users_size

    def frame(self, data: bytes) -> tuple[str, float] | None:
        """``(frame text, created_at as a POSIX timestamp)`` for the serialized
        ``ConnectResponse`` ``data`` if it is a notification of the expected shape, else
        None."""
        split = self._split(data)
        if split is None:
            return None
        nid, (user_json, _), (tail, created, _) = split
        return (
            f'{{"type":"notification","notification":{{"id":{nid},"user_id":{user_json},{tail}',
            created,
        )

    def payload(self, data: bytes) -> tuple[bytes, float] | None:
        """``frame``, as the UTF-8 bytes of the text: what a WebSocket text frame carries."""
        split = self._split(data)
        if split is None:
            return None
        nid, (_, user_json), (_, created, tail) = split
        return _PAYLOAD % (nid, user_json, tail), created

    def payloads(
        self, frames: list[bytes], start: int, payloads: list[bytes], created: list[float]
    ) -> None:
        """``payload`` of each of ``frames[start:]`` up to the first that is not a
        notification of the expected shape, appended to ``payloads``, their creation
        times to ``created``."""
        split_frame = self._split
        add, add_created = payloads.append, created.append
        for index in range(start, len(frames)):
            split = split_frame(frames[index])
            if split is None:
                return
            nid, (_, user_json), (_, at, tail) = split
            add(_PAYLOAD % (nid, user_json, tail))
            add_created(at)

    def _split(self, data: bytes) -> tuple[int, tuple[str, bytes], _Rest] | None:
        """The id, the user id's JSON and the rest's JSON of ``data``; None if it is not a
        notification of the expected shape."""
        # The two enclosing lengths (a frame's are 128 B to 16 KiB: two bytes) and the
        # user id's length (one byte) are read inline; anything longer by ``_varint``.
        try:
            if data[0] != _CONNECT_RESPONSE_NOTIFICATION:
                return None
            end = len(data)
            size, second = data[1], data[2]
            if size < 0x80:
                pos = 2
            elif second < 0x80:
                size, pos = (size & 0x7F) | (second << 7), 3
            else:
                size, pos = _varint(data, 1)
            if pos + size != end or data[pos] != _NOTIFICATION_EVENT_NOTIFICATION:
                return None
            size, second = data[pos + 1], data[pos + 2]
            if size < 0x80:
                pos += 2
            elif second < 0x80:
                size, pos = (size & 0x7F) | (second << 7), pos + 3
            else:
                size, pos = _varint(data, pos + 1)
            if pos + size != end:
                return None
            nid = 0
            if data[pos] == _ID:  # an id of up to three bytes (below 2**21) inline
                nid = data[pos + 1]
                if nid < 0x80:
                    pos += 2
                else:
                    second = data[pos + 2]
                    if second < 0x80:
                        nid, pos = (nid & 0x7F) | (second << 7), pos + 3
                    elif (third := data[pos + 3]) < 0x80:
                        nid = (nid & 0x7F) | ((second & 0x7F) << 7) | (third << 14)
                        pos += 4
                    else:
                        nid, pos = _varint(data, pos + 1)
            user = b""
            if pos < end and data[pos] == _USER_ID:
                size = data[pos + 1]
                if size < 0x80:
                    pos += 2
                else:
                    size, pos = _varint(data, pos + 1)
                user = data[pos : pos + size]
                pos += size
        except IndexError:
            return None
        if nid > INT64_MAX or pos > end:
            return None
        # A broadcast's frames follow one another with the same rest: compared in place
        # with the last one, not copied out and hashed for the map.
        last = self._last
        if last is not None and end - pos == len(last[0]) and data.endswith(last[0]):
            known = last[1]
        else:
            rest = data[pos:]
            got = self._rests.get(rest)
            if got is None:
                if self._encode(rest) is None:
                    return None
                got = self._rests[rest]
            known = got
            self._last = rest, known
        user_json = self._users.get(user)
        if user_json is None:
            try:
                text = orjson.dumps(user.decode()).decode()
            except UnicodeDecodeError:
                return None
            user_json = text, text.encode()
            users = self._users
            if len(users) >= self.users_size:
                users.clear()
            users[user] = user_json
        return nid, user_json, known

    def _encode(self, rest: bytes) -> tuple[str, float] | None:
        """The JSON after ``user_id`` for the fields ``rest`` (kept, also as bytes) and the
        creation time; None if they hold an id or a user id after all (not the expected
        shape) or do not parse."""
        try:
            n = notification_pb2.Notification.FromString(rest)
        except DecodeError:
            return None
        if n.id or n.user_id:
            return None
        obj = notification_object(n)
        del obj["id"], obj["user_id"]
        ts = n.created_at
        tail = orjson.dumps(obj)[1:] + b"}"
        text, created = tail.decode(), ts.seconds + ts.nanos * 1e-9
        rests = self._rests
        if len(rests) >= self.rests_size:
            rests.clear()
        rests[rest] = text, created, tail
        return text, created
