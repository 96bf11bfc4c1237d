"""The hand-written relay frames are exactly what protobuf writes, the notification id included."""

from __future__ import annotations

import pytest
from tidings.v1 import relay_pb2

from server.rpc import wire


@pytest.mark.parametrize("sid", [0, 1, 300, 2**63])
@pytest.mark.parametrize("nid", [0, 1, 127, 128, 2**40, 2**63 - 1])
def test_relay_frames_with_a_notification_id_are_what_protobuf_writes(sid: int, nid: int) -> None:
    event = b"\x12\x03abc" * 50
    reference = relay_pb2.RelayResponse(
        frames=[relay_pb2.RelayFrame(session_id=sid, event=event, notification_id=nid)]
    ).SerializeToString()
    assert wire.relay_event_frame(sid, event, nid) == reference
    (frame,) = relay_pb2.RelayResponse.FromString(reference).frames
    assert frame.notification_id == nid
