"""SessionRelayService: many sessions over one stream, each behaving like its own Connect.

Every test runs over the network and in-process (``--role all``: the servicer's
``relay_local`` batches, deliveries as tuples): the two must carry the same frames."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import grpc
import pytest
from tidings.v1 import admin_pb2, relay_pb2, relay_pb2_grpc, stream_pb2

from tests.auth_tokens import token
from tests.grpc.conftest import ADMIN, Node, auth
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["network", "in-process"])
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def as_frame(frame: relay_pb2.RelayFrame | tuple[int, int, bytes]) -> relay_pb2.RelayFrame:
    """An in-process batch's delivery as the ``RelayFrame`` it stands for."""
    if isinstance(frame, tuple):
        sid, nid, event = frame
        return relay_pb2.RelayFrame(session_id=sid, event=event, notification_id=nid)
    return frame


class Relay:
    """A relay call, its frames sorted by session."""

    def __init__(self, node: Node, via: str = "network") -> None:
        if via == "in-process":
            self.call: Any = node.server.in_process().relay.Relay()
        else:
            self.call = relay_pb2_grpc.SessionRelayServiceStub(node.channel).Relay()
        self.notification_ids: dict[int, list[int]] = defaultdict(list)
        self.events: dict[int, list[stream_pb2.ConnectResponse]] = defaultdict(list)
        self.ends: dict[int, relay_pb2.RelayEnd] = {}
        self.batches = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self.batches += 1
            for each in response.frames:
                frame = as_frame(each)
                if frame.notification_id:
                    self.notification_ids[frame.session_id].append(frame.notification_id)
                if frame.HasField("end"):
                    self.ends[frame.session_id] = frame.end
                else:
                    self.events[frame.session_id].append(
                        stream_pb2.ConnectResponse.FromString(frame.event)
                    )
            self._changed.set()

    async def open(self, sid: int, user: str, **md: str) -> None:
        metadata = {"authorization": f"Bearer {token(user)}", **md}
        await self.call.write(
            relay_pb2.RelayRequest(open=relay_pb2.RelayOpen(session_id=sid, metadata=metadata))
        )

    async def until(self, check: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    def kinds(self, sid: int) -> list[str]:
        return [str(m.WhichOneof("kind")) for m in self.events[sid]]

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def test_sessions_share_one_stream_and_batch(node: Node, via: str) -> None:
    relay = Relay(node, via)
    for sid in range(1, 51):
        await relay.open(sid, f"user{sid}")
    await relay.until(
        lambda: all(relay.kinds(s) == ["connection_established"] for s in range(1, 51))
    )
    await node.admin.BroadcastNotification(
        admin_pb2.BroadcastNotificationRequest(all=True, type="news", title="all"),
        metadata=auth(ADMIN),
    )
    before = relay.batches
    await relay.until(lambda: all(len(relay.events[s]) == 2 for s in range(1, 51)))
    assert all(relay.kinds(s)[1] == "notification" for s in range(1, 51))
    assert relay.events[7][1].notification.notification.user_id == "user7"
    assert relay.notification_ids[7] == [relay.events[7][1].notification.notification.id]
    assert relay.batches - before < 50, "fifty deliveries travelled in fewer batches"
    await relay.close()


async def test_commands_and_endings_match_connect(node: Node, via: str) -> None:
    relay = Relay(node, via)
    await relay.open(1, "a")
    await relay.call.write(
        relay_pb2.RelayRequest(
            open=relay_pb2.RelayOpen(session_id=2, metadata={"authorization": "Bearer nope"})
        )
    )
    await relay.open(3, "b", **{"tidings-since": "soon"})
    await relay.until(lambda: 2 in relay.ends and 3 in relay.ends and relay.events[1])
    assert relay.ends[2].code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert relay.ends[2].error_code == "unauthorized"
    assert relay.ends[3].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert relay.ends[3].error_field == "since"

    await relay.call.write(
        relay_pb2.RelayRequest(
            command=relay_pb2.RelayCommand(
                session_id=1, request=stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
            )
        )
    )
    await relay.until(lambda: relay.kinds(1)[-1:] == ["pong"])

    await node.admin.DisconnectUser(
        admin_pb2.DisconnectUserRequest(user_id="a"), metadata=auth(ADMIN)
    )
    await relay.until(lambda: 1 in relay.ends)
    assert relay.ends[1].code == grpc.StatusCode.ABORTED.value[0]
    await relay.close()


async def test_undelivered_notifications_go_back_to_the_queue(node: Node, via: str) -> None:
    relay = Relay(node, via)
    await relay.open(1, "u")
    await relay.until(lambda: relay.kinds(1) == ["connection_established"])
    made = [await node.create("u", title=str(i)) for i in range(3)]
    await relay.until(lambda: len(relay.events[1]) == 4)
    # the relay client could not pass the last two on before its browser left
    await relay.call.write(
        relay_pb2.RelayRequest(
            close=relay_pb2.RelayClose(session_id=1, undelivered_ids=[made[1].id, made[2].id])
        )
    )

    async def requeued() -> bool:
        return (await node.engine.stats()).queued == 2

    await until(requeued)
    again = await node.connect("u")
    hello = await again.hello()
    assert hello.queued == 2
    assert await again.notifications(2) == [made[1].id, made[2].id]
    await relay.close()


async def test_the_relay_ending_closes_its_sessions(node: Node, via: str) -> None:
    relay = Relay(node, via)
    await relay.open(1, "gone")
    await relay.until(lambda: relay.events[1])
    assert (await node.engine.status("gone")).connected
    await relay.close()

    async def closed() -> bool:
        return not (await node.engine.status("gone")).connected

    await until(closed)


def _command(sid: int, **kind: Any) -> relay_pb2.RelayRequest:
    return relay_pb2.RelayRequest(
        command=relay_pb2.RelayCommand(session_id=sid, request=stream_pb2.ConnectRequest(**kind))
    )


async def test_commands_sent_while_the_session_opens_are_applied_in_order(node: Node) -> None:
    made = await node.create("early")
    relay = Relay(node)
    await relay.open(1, "early")
    # no wait for the greeting: the open (a replay) is still running when these come
    await relay.call.write(_command(1, ping=stream_pb2.PingCommand()))
    await relay.call.write(
        _command(1, mark_read=stream_pb2.MarkReadCommand(notification_id=made.id))
    )
    await relay.call.write(_command(1, get_counts=stream_pb2.GetCountsCommand()))
    await relay.call.write(_command(1, ping=stream_pb2.PingCommand()))
    expected = [
        "connection_established",
        "notification",
        "pong",
        "notification_marked_read",
        "counts",
        "pong",
    ]
    await relay.until(lambda: [k for k in relay.kinds(1) if k != "heartbeat"] == expected)
    assert relay.events[1][4].counts.unread == 0
    assert 1 not in relay.ends
    await relay.close()


async def test_too_many_commands_before_the_open_close_the_session_as_slow(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.rpc.relay.MAX_WAITING", 2)
    relay = Relay(node)
    await relay.open(1, "hasty")
    for _ in range(5):
        await relay.call.write(_command(1, ping=stream_pb2.PingCommand()))
    await relay.until(lambda: 1 in relay.ends)
    assert relay.ends[1].code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "pong" not in relay.kinds(1)
    await relay.close()
