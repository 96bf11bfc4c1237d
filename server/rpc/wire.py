"""Hand-written protobuf framing for the hottest messages (byte-identical to protobuf's).

Length-delimited fields are a tag byte, a varint length and the bytes: writing them
directly around pre-serialized parts avoids building message objects per delivery.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
    """``value`` (non-negative) as a protobuf base-128 varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Below this, ``SMALL[value]`` is ``varint(value)`` without a call (message lengths).
SMALL_MAX = 2048
SMALL = [varint(i) for i in range(SMALL_MAX)]


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` (the key byte), the length, ``payload``."""
    return tag + varint(len(payload)) + payload


# Keys (field number << 3 | wire type 2, or 0 for varints) of the fields written here.
NOTIFICATION_EVENT_NOTIFICATION = b"\x0a"  # NotificationEvent.notification = 1
CONNECT_RESPONSE_NOTIFICATION = b"\x12"  # ConnectResponse.notification = 2
RELAY_RESPONSE_FRAMES = b"\x0a"  # RelayResponse.frames = 1
RELAY_FRAME_SESSION_ID = b"\x08"  # RelayFrame.session_id = 1 (varint)
RELAY_FRAME_EVENT = b"\x12"  # RelayFrame.event = 2
RELAY_FRAME_NOTIFICATION_ID = b"\x20"  # RelayFrame.notification_id = 4 (varint)


def relay_event_frame(session_id: int, event: bytes, notification_id: int = 0) -> bytes:
    """``RelayResponse.frames`` entry ``{session_id, event, notification_id}``, ready to
    concatenate (``notification_id`` a positive id, or 0 for none)."""
    sid = RELAY_FRAME_SESSION_ID + varint(session_id) if session_id else b""  # 0: default
    nid = RELAY_FRAME_NOTIFICATION_ID + varint(notification_id) if notification_id else b""
    return field(RELAY_RESPONSE_FRAMES, sid + field(RELAY_FRAME_EVENT, event) + nid)
