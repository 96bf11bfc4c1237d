"""The Python Subscriber against real server processes: delivery, resume, backoff, heartbeats."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time

import jwt
import pytest
from tidings.client import (
    AuthenticationError,
    Backoff,
    CommandError,
    Connected,
    Disconnected,
    DisconnectReason,
    Notification,
    Publisher,
    ReconnectGaveUp,
    Reconnecting,
    Subscriber,
    Subscription,
)

from tests.clients.conftest import StateLog, grpc_server
from tests.harness import TEST_SECRET, ServerProcess

FAST = Backoff(base=0.05, cap=0.2, after_abort=0.3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _create(publisher: Publisher, user: str, *titles: str, type: str = "t") -> list[int]:
    return [(await publisher.create(user, type, title)).notification.id for title in titles]


async def _take(subscriber: Subscriber, count: int) -> list[Notification]:
    return [await anext(subscriber) for _ in range(count)]


async def test_delivers_live_and_queued_notifications_with_parsed_data(
    server: ServerProcess,
) -> None:
    async with asyncio.timeout(20), Publisher(server.grpc_addr) as publisher:
        queued = await publisher.create("42", "welcome", "Hi", data={"n": 1, "tags": ["a"]})
        async with Subscriber(server.grpc_addr, user="42", backoff=FAST) as subscriber:
            info = await subscriber.wait_connected()
            assert (info.user_id, info.queued) == ("42", 1)
            first = await anext(subscriber)
            assert first == queued.notification
            assert first.data == {"n": 1, "tags": ["a"]}

            live = await publisher.create("42", "alert", "Now", message="body", priority="high")
            second = await anext(subscriber)
            assert (second.id, second.message, second.priority) == (
                live.notification.id,
                "body",
                "high",
            )


async def test_mark_read_subscribe_and_unsubscribe_on_the_live_stream(
    server: ServerProcess,
) -> None:
    marked: list[int] = []
    async with (
        asyncio.timeout(20),
        Publisher(server.grpc_addr) as publisher,
        Subscriber(
            server.grpc_addr, user="7", backoff=FAST, on_marked_read=marked.append
        ) as subscriber,
    ):
        await subscriber.wait_connected()
        (nid,) = await _create(publisher, "7", "one")
        assert (await anext(subscriber)).id == nid
        await subscriber.mark_read(nid)
        assert marked == [nid]
        with pytest.raises(CommandError) as err:
            await subscriber.mark_read(nid + 1000)
        assert err.value.code == "not_found"

        assert await subscriber.subscribe(["keep"]) == Subscription(types=frozenset({"keep"}))
        await _create(publisher, "7", "filtered out", type="drop")
        (kept,) = await _create(publisher, "7", "kept", type="keep")
        assert (await anext(subscriber)).id == kept
        assert await subscriber.unsubscribe(["keep"]) == Subscription(types=frozenset())


async def test_reconnects_after_kill_9_and_receives_everything_exactly_once(
    database_url: str,
) -> None:
    servers = [await grpc_server(database_url).start()]
    # The restarted server binds a new port; the subscriber learns it only once the
    # notifications "created meanwhile" exist, so they are surely created while it is away.
    current = [servers[0].grpc_addr]
    log = StateLog()
    subscriber = Subscriber(
        lambda: current[-1],
        user="u1",
        backoff=FAST,
        connect_timeout=2.0,
        on_state=log,
    )
    try:
        async with asyncio.timeout(45), subscriber:
            await subscriber.wait_connected()
            async with Publisher(servers[-1].grpc_addr) as publisher:
                before = await _create(publisher, "u1", "b1", "b2", "b3")
            got = await _take(subscriber, 3)
            # b1 and b2 are processed (the application asked for the next one); b3 was
            # handed out but is not processed yet, so the resume must start after b2.
            assert subscriber.last_processed_id == before[1]

            await servers[-1].kill()
            await log.wait_for(lambda e: isinstance(e, Disconnected))
            servers.append(await grpc_server(database_url).start())
            async with Publisher(servers[-1].grpc_addr) as publisher:
                meanwhile = await _create(publisher, "u1", "m1", "m2", "m3")
                current.append(servers[-1].grpc_addr)
                resumed = await log.wait_for(lambda e: isinstance(e, Connected), count=2)
                assert isinstance(resumed, Connected)
                # since = b2: the server replays b3 (a duplicate, dropped) and m1..m3, and
                # b1/b2 too if it died before recording their delivery (dropped as well).
                assert resumed.info.queued >= 4
                after = await _create(publisher, "u1", "a1", "a2")
                got += await _take(subscriber, 5)
                (sentinel,) = await _create(publisher, "u1", "sentinel")
                got += await _take(subscriber, 1)

            assert [n.id for n in got] == [*before, *meanwhile, *after, sentinel]
            reasons = [e.reason for e in log.of(Disconnected)]
            assert reasons[0] is DisconnectReason.UNAVAILABLE
    finally:
        for process in servers:
            await process.kill()


async def test_backoff_delays_follow_the_configured_schedule() -> None:
    # Nothing listens on this port: every attempt fails at once.
    target = f"127.0.0.1:{_free_port()}"
    policy = dict(base=0.01, cap=0.04, max_attempts=5)
    log = StateLog()
    subscriber = Subscriber(
        target,
        user="u",
        backoff=Backoff(**policy, random=random.Random(1234).random),  # type: ignore[arg-type]
        on_state=log,
    )
    async with asyncio.timeout(20), subscriber:
        with pytest.raises(ReconnectGaveUp) as gave_up:
            await anext(subscriber)
    assert gave_up.value.attempts == 5

    expected = Backoff(**policy, random=random.Random(1234).random).schedule(5)  # type: ignore[arg-type]
    reconnecting = [e for e in log.events if isinstance(e, Reconnecting)]
    assert [e.attempt for e in reconnecting] == [0, 1, 2, 3, 4]
    assert [e.delay for e in reconnecting] == pytest.approx(expected)
    for n, delay in enumerate(expected):
        assert 0 <= delay <= min(0.04, 0.01 * 2**n)
    final = log.events[-1]
    assert isinstance(final, Disconnected) and not final.will_reconnect
    assert final.reason is DisconnectReason.CONNECT_FAILED


async def test_dead_connection_is_detected_by_missing_heartbeats(database_url: str) -> None:
    process = await grpc_server(database_url, "--heartbeat-interval", "0.3").start()
    assert process.proc is not None
    log = StateLog()
    subscriber = Subscriber(
        process.grpc_addr, user="hb", backoff=FAST, connect_timeout=1.0, on_state=log
    )
    try:
        async with asyncio.timeout(30), subscriber:
            info = await subscriber.wait_connected()
            assert info.heartbeat_interval == pytest.approx(0.3)
            stopped_at, position = time.monotonic(), log.mark()
            process.proc.send_signal(signal.SIGSTOP)
            dead = await log.wait_for(
                lambda e: (
                    isinstance(e, Disconnected) and e.reason is DisconnectReason.HEARTBEAT_TIMEOUT
                ),
                after=position,
            )
            # Dead after 2 × heartbeat_interval of silence; the last heartbeat came at most
            # one interval before the stop.
            assert time.monotonic() - stopped_at >= 2 * 0.3 - 0.3
            assert isinstance(dead, Disconnected) and dead.will_reconnect
            # While the server is frozen, attempts time out instead of hanging.
            await log.wait_for(
                lambda e: (
                    isinstance(e, Disconnected) and e.reason is DisconnectReason.CONNECT_TIMEOUT
                ),
                after=position,
            )
            position = log.mark()
            process.proc.send_signal(signal.SIGCONT)
            await log.wait_for(lambda e: isinstance(e, Connected), after=position)
            async with Publisher(process.grpc_addr) as publisher:
                (nid,) = await _create(publisher, "hb", "after the freeze")
            assert (await anext(subscriber)).id == nid
    finally:
        if process.proc.returncode is None:
            process.proc.send_signal(signal.SIGCONT)
        await process.kill()


async def test_operator_disconnect_waits_before_reconnecting(server: ServerProcess) -> None:
    log = StateLog()
    backoff = Backoff(base=0.05, cap=0.2, after_abort=0.3, random=lambda: 0.5)
    async with (
        asyncio.timeout(20),
        Publisher(server.grpc_addr) as publisher,
        Subscriber(server.grpc_addr, user="op", backoff=backoff, on_state=log) as subscriber,
    ):
        await subscriber.wait_connected()
        assert await publisher.disconnect("op") == 1
        aborted = await log.wait_for(lambda e: isinstance(e, Disconnected))
        assert isinstance(aborted, Disconnected) and aborted.reason is DisconnectReason.ABORTED
        wait = await log.wait_for(lambda e: isinstance(e, Reconnecting))
        assert isinstance(wait, Reconnecting)
        assert wait.delay == pytest.approx(0.3 + 0.5 * 0.05)
        await log.wait_for(lambda e: isinstance(e, Connected), count=2)


async def test_authentication_failure_stops_without_reconnecting(database_url: str) -> None:
    async with ServerProcess(
        "--jwt-secret", TEST_SECRET, role="grpc", database_url=database_url
    ) as process:
        log = StateLog()
        bad = Subscriber(process.grpc_addr, token="not-a-jwt", backoff=FAST, on_state=log)
        async with asyncio.timeout(20), bad:
            with pytest.raises(AuthenticationError):
                await anext(bad)
        assert not log.of(Reconnecting)
        final = log.events[-1]
        assert isinstance(final, Disconnected)
        assert final.reason is DisconnectReason.AUTH_FAILED and not final.will_reconnect

        token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, TEST_SECRET)
        async with asyncio.timeout(20), Subscriber(process.grpc_addr, token=token) as good:
            assert (await good.wait_connected()).user_id == "alice"
