"""The Subscriber asks for its whole type filter at every connect (``ConnectParams``)."""

from __future__ import annotations

import asyncio
import socket

from tidings.client import Backoff, Connected, Publisher, Subscriber, Subscription

from tests.clients.conftest import StateLog
from tests.harness import ServerProcess

FAST = Backoff(base=0.05, cap=0.2, after_abort=0.1)


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def _reconnected_after(
    server: ServerProcess, publisher: Publisher, user: str, log: StateLog, current: list[str]
) -> Connected:
    """Take ``user`` offline (operator disconnect, then an address that answers nothing),
    create one notification of type ``x`` and one of ``y``, and let the Subscriber back."""
    current.append(_dead_address())
    await publisher.disconnect(user)
    await publisher.create(user, "x", "refused")
    await publisher.create(user, "y", "admitted")
    current.append(server.grpc_addr)
    event = await log.wait_for(lambda e: isinstance(e, Connected), count=2)
    assert isinstance(event, Connected)
    return event


async def test_all_but_these_is_the_filter_of_the_replay_after_a_reconnect(
    server: ServerProcess,
) -> None:
    log = StateLog()
    current = [server.grpc_addr]
    async with (
        asyncio.timeout(30),
        Publisher(server.grpc_addr) as publisher,
        Subscriber(lambda: current[-1], user="f1", backoff=FAST, on_state=log) as subscriber,
    ):
        await subscriber.wait_connected()
        assert await subscriber.unsubscribe(["x"]) == Subscription(excluded=frozenset({"x"}))
        event = await _reconnected_after(server, publisher, "f1", log, current)
        assert event.info.queued == 1  # the server replays only what the filter admits
        assert (await anext(subscriber)).type == "y"


async def test_no_type_at_all_is_restored_after_a_reconnect(server: ServerProcess) -> None:
    log = StateLog()
    current = [server.grpc_addr]
    async with (
        asyncio.timeout(30),
        Publisher(server.grpc_addr) as publisher,
        Subscriber(
            lambda: current[-1], user="f2", types=["y"], backoff=FAST, on_state=log
        ) as subscriber,
    ):
        await subscriber.wait_connected()
        assert await subscriber.unsubscribe(["y"]) == Subscription(types=frozenset())
        event = await _reconnected_after(server, publisher, "f2", log, current)
        assert event.info.queued == 0
        assert await subscriber.subscribe(["y"]) == Subscription(types=frozenset({"y"}))
        made = await publisher.create("f2", "y", "live")
        assert (await anext(subscriber)).id == made.notification.id
