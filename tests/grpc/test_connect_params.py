"""Typed connect parameters (``ConnectParams``) on Connect and on the relay, the facts the
relay frames state for the bridge, and the order of a relayed session's answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from tidings import metadata as keys
from tidings.v1 import relay_pb2, stream_pb2

from server.engine.filters import MAX_TYPES
from tests.auth_tokens import token
from tests.grpc.conftest import Node, NodeFactory, Stream
from tests.grpc.test_relay import Relay

pytestmark = pytest.mark.timeout(60)


def only(*types: str) -> stream_pb2.ConnectParams:
    params = stream_pb2.ConnectParams()
    params.filter.mode = stream_pb2.FILTER_MODE_ONLY
    params.filter.notification_types.extend(types)
    return params


def all_except(*types: str) -> stream_pb2.ConnectParams:
    params = stream_pb2.ConnectParams()
    params.filter.mode = stream_pb2.FILTER_MODE_ALL_EXCEPT
    params.filter.excluded_types.extend(types)
    return params


def connect(
    node: Node, user: str, params: stream_pb2.ConnectParams | bytes, *extra: tuple[str, str]
) -> Stream:
    raw = params if isinstance(params, bytes) else params.SerializeToString()
    md: list[tuple[str, str | bytes]] = [("authorization", f"Bearer {token(user)}")]
    md += [*extra, (keys.CONNECT_PARAMS, raw)]
    stream = Stream(node.users.Connect(metadata=md))
    node.streams.append(stream)
    return stream


async def refusal(stream: Stream) -> tuple[grpc.StatusCode, dict[str, str]]:
    """How a Connect refused at the start ended: status and trailers."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.recv()
    trailers = {k: v for k, v in caught.value.trailing_metadata() or () if isinstance(v, str)}
    return caught.value.code(), trailers


# --- Connect ---------------------------------------------------------------------------


async def test_the_none_filter_receives_nothing_until_a_subscribe(node: Node) -> None:
    await node.create("p-none", type="a")
    stream = connect(node, "p-none", only())
    hello = await stream.hello()
    assert hello.queued == 0  # the queued "a" is not for this session
    await node.create("p-none", type="b")
    await stream.send(subscribe=stream_pb2.SubscribeCommand(notification_types=["c"]))
    updated = await stream.recv_kind("subscription_updated")
    assert list(updated.notification_types) == ["c"]
    made = await node.create("p-none", type="c")
    assert await stream.notifications(1) == [made.id]


async def test_all_but_these_applies_to_the_replay_and_live(node: Node) -> None:
    kept = await node.create("p-except", type="keep")
    await node.create("p-except", type="drop")
    stream = connect(node, "p-except", all_except("drop"))
    assert (await stream.hello()).queued == 1
    assert await stream.notifications(1) == [kept.id]
    await node.create("p-except", type="drop")
    live = await node.create("p-except", type="other")
    assert await stream.notifications(1) == [live.id]


async def test_since_resumes_and_the_typed_form_wins_over_the_textual_one(node: Node) -> None:
    first = await node.create("p-since")
    second = await node.create("p-since")
    params = stream_pb2.ConnectParams(since=first.id, client_name="test", client_version="1")
    stream = connect(node, "p-since", params, (keys.SINCE, "0"), (keys.TYPES, "zzz"))
    assert (await stream.hello()).queued == 1
    assert await stream.notifications(1) == [second.id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (b"\xff\xff", "connect_params"),
        (stream_pb2.ConnectParams(since=-1), "since"),
        (only(""), "types"),
        (only(*(f"t{i}" for i in range(MAX_TYPES + 1))), "notification_types"),
        (stream_pb2.ConnectParams(client_name="x" * 65), "client_name"),
    ],
)
async def test_bad_parameters_are_refused_naming_the_field(
    node: Node, params: stream_pb2.ConnectParams | bytes, field: str
) -> None:
    status, trailers = await refusal(connect(node, "p-bad", params))
    assert status is grpc.StatusCode.INVALID_ARGUMENT
    assert trailers == {keys.ERROR_CODE: "invalid_message", keys.ERROR_FIELD: field}


async def test_a_filter_whose_lists_contradict_its_mode_is_refused(node: Node) -> None:
    params = only("a")
    params.filter.excluded_types.append("b")
    status, trailers = await refusal(connect(node, "p-mixed", params))
    assert status is grpc.StatusCode.INVALID_ARGUMENT
    assert trailers[keys.ERROR_FIELD] == "filter"


async def test_credentials_are_checked_before_parameters(node: Node) -> None:
    md: list[tuple[str, str | bytes]] = [
        ("authorization", "Bearer nonsense"),
        (keys.CONNECT_PARAMS, b"\xff\xff"),
    ]
    stream = Stream(node.users.Connect(metadata=md))
    node.streams.append(stream)
    status, _ = await refusal(stream)
    assert status is grpc.StatusCode.UNAUTHENTICATED


# --- the relay -------------------------------------------------------------------------


class TypedRelay(Relay):
    """A relay client that also keeps the frames as sent (ids, allowance); heartbeats,
    which may come at any moment, are left out."""

    def __init__(self, node: Node) -> None:
        self.frames: dict[int, list[relay_pb2.RelayFrame]] = {}
        super().__init__(node)

    async def _read(self) -> None:
        async for response in self.call:
            self.batches += 1
            for frame in response.frames:
                if frame.HasField("end"):
                    self.ends[frame.session_id] = frame.end
                    continue
                event = stream_pb2.ConnectResponse.FromString(frame.event)
                if event.WhichOneof("kind") != "heartbeat":
                    self.frames.setdefault(frame.session_id, []).append(frame)
                    self.events[frame.session_id].append(event)
            self._changed.set()

    async def open_with(self, sid: int, user: str, params: stream_pb2.ConnectParams) -> None:
        opening = relay_pb2.RelayOpen(
            session_id=sid, metadata={"authorization": f"Bearer {token(user)}"}, params=params
        )
        await self.call.write(relay_pb2.RelayRequest(open=opening))

    async def command(self, sid: int, **kind: Any) -> None:
        request = stream_pb2.ConnectRequest(**kind)
        await self.call.write(
            relay_pb2.RelayRequest(command=relay_pb2.RelayCommand(session_id=sid, request=request))
        )


@pytest.fixture
async def relay(node: Node) -> Any:
    r = TypedRelay(node)
    yield r
    await r.close()


async def test_relay_open_takes_typed_parameters(node: Node, relay: TypedRelay) -> None:
    await node.create("r-none", type="a")
    await relay.open_with(1, "r-none", only())
    await relay.until(lambda: relay.kinds(1) == ["connection_established"])
    assert relay.events[1][0].connection_established.queued == 0
    await node.create("r-none", type="b")
    await relay.command(1, ping=stream_pb2.PingCommand())
    await relay.until(lambda: relay.kinds(1) == ["connection_established", "pong"])


async def test_relay_frames_state_the_allowance_and_the_ids(
    make_node: NodeFactory,
) -> None:
    node = await make_node(max_buffer=7, max_buffer_bytes=5000)
    relay = TypedRelay(node)
    try:
        made = [await node.create("r-facts") for _ in range(2)]
        await relay.open_with(1, "r-facts", stream_pb2.ConnectParams())
        await relay.until(lambda: len(relay.frames.get(1, [])) == 3)
        hello, *replay = relay.frames[1]
        assert hello.allowance == relay_pb2.RelayAllowance(
            max_events=7, max_bytes=5000, replay_events=2
        )
        assert [f.notification_id for f in replay] == [n.id for n in made]
        live = await node.create("r-facts")
        await relay.command(1, ping=stream_pb2.PingCommand())
        await relay.until(lambda: len(relay.frames[1]) == 5)
        by_kind = {relay.kinds(1)[i]: relay.frames[1][i] for i in (3, 4)}
        assert by_kind["notification"].notification_id == live.id
        assert by_kind["pong"].notification_id == 0
        assert not by_kind["notification"].HasField("allowance")
    finally:
        await relay.close()


def gate_mark_read(node: Node, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every mark_read of ``node``'s engine until the returned event is set."""
    release = asyncio.Event()
    original: Callable[[str, int], Awaitable[Any]] = node.engine.mark_read

    async def held(user_id: str, notification_id: int) -> Any:
        await release.wait()
        return await original(user_id, notification_id)

    monkeypatch.setattr(node.engine, "mark_read", held)
    return release


async def test_a_relayed_session_is_answered_in_order_without_holding_up_others(
    node: Node, relay: TypedRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await node.create("r-order")
    for sid, user in ((1, "r-order"), (2, "r-other")):
        await relay.open_with(sid, user, stream_pb2.ConnectParams())
    await relay.until(lambda: len(relay.kinds(1)) == 2 and len(relay.kinds(2)) == 1)
    release = gate_mark_read(node, monkeypatch)
    await relay.command(1, mark_read=stream_pb2.MarkReadCommand(notification_id=made.id))
    await relay.command(1, ping=stream_pb2.PingCommand())
    await relay.command(2, ping=stream_pb2.PingCommand())
    # Session 2 is answered while session 1's mark_read waits on the store; the relay
    # reads commands in order, so session 1's ping has been read by then too.
    await relay.until(lambda: relay.kinds(2)[-1:] == ["pong"])
    assert relay.kinds(1) == ["connection_established", "notification"]
    release.set()
    await relay.until(lambda: len(relay.kinds(1)) == 4)
    assert relay.kinds(1)[2:] == ["notification_marked_read", "pong"]


async def test_a_session_that_piles_commands_behind_a_mark_read_is_closed_as_slow(
    node: Node, relay: TypedRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.rpc.relay import MAX_WAITING

    made = await node.create("r-pile")
    for sid, user in ((1, "r-pile"), (2, "r-calm")):
        await relay.open_with(sid, user, stream_pb2.ConnectParams())
    await relay.until(lambda: len(relay.kinds(1)) == 2 and len(relay.kinds(2)) == 1)
    release = gate_mark_read(node, monkeypatch)
    await relay.command(1, mark_read=stream_pb2.MarkReadCommand(notification_id=made.id))
    for _ in range(MAX_WAITING + 1):
        await relay.command(1, ping=stream_pb2.PingCommand())
    await relay.command(2, ping=stream_pb2.PingCommand())
    await relay.until(lambda: 1 in relay.ends and relay.kinds(2)[-1:] == ["pong"])
    assert relay.ends[1].code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert 2 not in relay.ends
    release.set()
