"""Hostile WebSocket clients (issue 12): each attack ends cleanly and costs the server
nothing it keeps."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.bridge.client import create, open_socket, rest
from tests.bridge.ws_raw import BINARY, CLOSE, CONTINUATION, PING, TEXT, RawSocket, frame, text
from tests.harness import ServerProcess
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def connection_count(http: httpx.AsyncClient, user: str) -> int:
    status = await http.get("/api/v1/ws/notifications/status", params={"user_id": user})
    return int(status.json()["connection_count"])


# --- 3: a 1009 close the client never answers -------------------------------------------


async def test_a_1009_close_the_client_ignores_ends_the_session_and_the_connection(
    insecure_server: ServerProcess, uid: str
) -> None:
    raw = await RawSocket.open(insecure_server, user_id=uid)
    try:
        assert (await raw.message())["type"] == "connection_established"
        raw.send(text('{"type": "ping", "pad": "' + "x" * 70_000 + '"}'))
        assert await raw.close_code() == 1009
        # ... and the client never answers the close frame.
        async with rest(insecure_server) as http:

            async def session_gone() -> bool:
                return await connection_count(http, uid) == 0

            await until(session_gone, within=3)
            # what is created now is queued, not counted as sent to the zombie
            created = await create(insecure_server, uid)
            await raw.ended(timeout=5)  # the TCP connection is dropped after a short while
        socket, hello = await open_socket(insecure_server, user_id=uid)
        assert hello["queued"] == 1
        assert (await socket.expect("notification"))["notification"]["id"] == created["id"]
        await socket.close()
    finally:
        raw.abort()


async def test_a_client_that_answers_the_1009_close_is_let_go_at_once(
    insecure_server: ServerProcess, uid: str
) -> None:
    raw = await RawSocket.open(insecure_server, user_id=uid)
    try:
        await raw.message()
        raw.send(text('{"type": "ping", "pad": "' + "x" * 70_000 + '"}'))
        assert await raw.close_code() == 1009
        raw.send(frame(CLOSE, struct.pack("!H", 1009)))
        await raw.ended(timeout=1)
    finally:
        raw.abort()


# --- 4: commands sent before connection_established ---------------------------------------


async def test_commands_sent_at_once_are_answered_after_the_greeting_in_order(
    insecure_server: ServerProcess, uid: str
) -> None:
    async def session(i: int) -> None:
        raw = await RawSocket.open(insecure_server, user_id=f"{uid}-{i}")
        try:
            raw.send(text({"type": "ping"}))
            raw.send(text({"type": "subscribe", "notification_types": ["a"]}))
            raw.send(text("nonsense"))
            raw.send(text({"type": "ping"}))
            kinds = [(await raw.message())["type"] for _ in range(5)]
            assert kinds == [
                "connection_established", "pong", "subscription_updated", "error", "pong",
            ]  # fmt: skip
        finally:
            raw.abort()

    await asyncio.gather(*(session(i) for i in range(20)))


# --- 5: bounded filters and session buffers ------------------------------------------------


async def test_a_filter_holds_at_most_100_types(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    many = [f"t{i}" for i in range(101)]
    error = await socket.ask({"type": "subscribe", "notification_types": many})
    assert error["type"] == "error" and error["code"] == "invalid_message", error
    # nothing changed: still every type
    update = await socket.ask({"type": "unsubscribe", "notification_types": ["z"]})
    assert update["notification_types"] is None and update["excluded_types"] == ["z"]
    update = await socket.ask({"type": "subscribe", "notification_types": many[:100]})
    assert len(update["notification_types"]) == 100
    error = await socket.ask({"type": "subscribe", "notification_types": ["one-more"]})
    assert error["code"] == "invalid_message", error
    again = await socket.ask({"type": "subscribe", "notification_types": ["t1"]})  # no growth
    assert len(again["notification_types"]) == 100
    await socket.close()


async def test_an_excluded_list_is_bounded_too(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    for i in range(10):
        update = await socket.ask(
            {"type": "unsubscribe", "notification_types": [f"t{i}-{j}" for j in range(10)]}
        )
        assert len(update["excluded_types"]) == 10 * (i + 1)
    error = await socket.ask({"type": "unsubscribe", "notification_types": ["more"]})
    assert error["code"] == "invalid_message", error
    await socket.close()


async def test_a_filter_is_bounded_in_bytes(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    wide = [f"{i:02d}" + "é" * 62 for i in range(70)]  # 70 types, 124+ bytes each: > 8 KiB
    error = await socket.ask({"type": "subscribe", "notification_types": wide})
    assert error["code"] == "invalid_message", error
    await socket.quiet()
    await socket.close()


async def test_too_many_types_at_connect_are_refused_with_1008(
    insecure_server: ServerProcess, uid: str
) -> None:
    types = ",".join(f"t{i}" for i in range(101))
    socket, _ = await open_socket(insecure_server, user_id=uid, types=types, greet=False)
    assert (await socket.expect("error"))["code"] == "invalid_message"
    assert (await socket.closed())[0] == 1008


@pytest.mark.timeout(120)
async def test_a_session_over_the_byte_bound_is_closed_as_slow_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """Few messages but many bytes waiting: 1013 long before --max-session-buffer."""
    db = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    async with ServerProcess("--insecure", database_url=db) as server:
        ws = await connect(f"{server.ws_url}?user_id=big", max_queue=1, max_size=None)
        await ws.recv()  # connection_established; from now on the client reads nothing
        async with rest(server) as http:
            blob = {"blob": "x" * 200_000}
            created = 0
            while await connection_count(http, "big"):
                # 300 × 200 kB = 60 MB, far beyond the socket buffers and the 8 MiB bound,
                # and far below the default bound of 1000 messages
                assert created < 300, "the session was never closed"
                response = await http.post(
                    "/api/v1/notifications",
                    json={"user_id": "big", "type": "t", "title": "x", "data": blob},
                )
                assert response.status_code == 201
                created += 1

            async def requeued() -> bool:
                stats = await http.get("/api/v1/ws/notifications/stats")
                return int(stats.json()["queued"]) > 0

            await until(requeued, within=10)
        ws.transport.abort()
        socket, hello = await open_socket(server, user_id="big", since=0)
        assert hello["queued"] == min(created, 100)
        await socket.close()


# --- 6: invalid frames count against the rate limit ---------------------------------------


@pytest.mark.parametrize("garbage", ["x", '{"type": "zzz"}', '{"type": "mark_read"}'])
async def test_invalid_frames_count_against_the_rate_limit(
    insecure_server: ServerProcess, uid: str, garbage: str
) -> None:
    raw = await RawSocket.open(insecure_server, user_id=uid)
    try:
        await raw.message()
        burst = 300  # default: 50/s with bursts of 100
        raw.send(b"".join(text(garbage) for _ in range(burst)))
        codes = [(await raw.message())["code"] for _ in range(burst)]
        assert codes.count("rate_limited") >= 100, codes
        assert set(codes) - {"rate_limited"} <= {
            "invalid_json", "unknown_message_type", "invalid_message",
        }  # fmt: skip
    finally:
        raw.abort()


# --- 9, 12b: frames that break the protocol, binary frames ----------------------------------


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(TEXT, b'{"type": "ping", "x": "\xff"}'), 1007),
        (frame(TEXT, b'"\xc0\xaf"'), 1007),  # overlong "/"
        (frame(TEXT, b'"\xed\xa0\x80"'), 1007),  # a UTF-16 surrogate
        (frame(PING, b"p" * 126), 1002),  # control frames carry at most 125 bytes
        (frame(0x3, b"{}"), 1002),  # a reserved opcode
        (frame(CONTINUATION, b"{}"), 1002),  # nothing to continue
        (frame(PING, b"p", fin=False), 1002),  # control frames cannot be fragmented
        (frame(TEXT, b"{}", rsv=0b010), 1002),  # RSV2 without an extension
        (frame(BINARY, b'{"type": "ping"}'), 1003),
        (frame(BINARY, b""), 1003),
    ],
    ids=[
        "xff",
        "overlong",
        "surrogate",
        "long-ping",
        "opcode-3",
        "stray-continuation",
        "fragmented-ping",
        "rsv2",
        "binary",
        "empty-binary",
    ],
)
async def test_protocol_errors_get_a_close_frame_with_their_code(
    insecure_server: ServerProcess, uid: str, bad: bytes, code: int
) -> None:
    raw = await RawSocket.open(insecure_server, user_id=uid)
    try:
        await raw.message()
        raw.send(bad)
        assert await raw.close_code() == code
        await raw.ended(timeout=5)
        async with rest(insecure_server) as http:

            async def session_gone() -> bool:
                return await connection_count(http, uid) == 0

            await until(session_gone, within=3)
    finally:
        raw.abort()


async def test_a_bad_frame_after_a_fragment_is_still_answered(
    insecure_server: ServerProcess, uid: str
) -> None:
    raw = await RawSocket.open(insecure_server, user_id=uid)
    try:
        await raw.message()
        raw.send(frame(TEXT, b'{"type": ', fin=False) + frame(CONTINUATION, b'"\xff"}'))
        assert await raw.close_code() == 1007
    finally:
        raw.abort()
