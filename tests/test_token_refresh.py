"""A session lives as long as its token, refreshed in-band (docs/PROTOCOL.md §2.7), on a
real server over WebSocket and gRPC. Tokens live a few seconds; every wait is for an event."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
import jwt
import pytest
import pytest_asyncio
from tidings.v1 import stream_pb2, stream_pb2_grpc

from tests.bridge.client import open_socket
from tests.grpc.conftest import Stream
from tests.harness import TEST_SECRET, ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Long enough for a token of a few seconds to run out.
WAIT = 10.0


def short_token(user: str, ttl: int = 8, secret: str = TEST_SECRET) -> str:
    """A token of ``ttl`` seconds: warned about a tenth of that before (0.8 s by default,
    time enough for a refresh round trip on a loaded machine)."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


def exp_of(tok: str) -> int:
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    assert isinstance(exp, int)
    return exp


def iso_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def user() -> str:
    return "u-" + uuid.uuid4().hex[:12]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    db = tmp_path_factory.mktemp("refresh") / "tidings.db"
    args = ("--jwt-secret", TEST_SECRET)
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{db}") as node:
        yield node


# --- WebSocket -----------------------------------------------------------------------------


async def test_ws_refresh_keeps_the_session_past_the_first_token(server: ServerProcess) -> None:
    uid = user()
    first = short_token(uid)
    socket, _ = await open_socket(server, token=first)
    warning = await socket.expect("token_expiring", WAIT)
    assert iso_seconds(warning["expires_at"]) == exp_of(first)
    fresh = short_token(uid, ttl=3)
    refreshed = await socket.ask({"type": "refresh", "token": fresh})
    assert refreshed == {"type": "token_refreshed", "expires_at": refreshed["expires_at"]}
    assert iso_seconds(refreshed["expires_at"]) == exp_of(fresh)
    # The next warning is the fresh token's: the session outlived the first one.
    warning = await socket.expect("token_expiring", WAIT)
    assert iso_seconds(warning["expires_at"]) == exp_of(fresh)
    assert time.time() > exp_of(first)
    assert await socket.closed(WAIT) == (4003, "token_expired")


async def test_ws_a_session_that_does_not_refresh_is_told_then_closed(
    server: ServerProcess,
) -> None:
    socket, _ = await open_socket(server, token=short_token(user(), ttl=2))
    await socket.expect("token_expiring", WAIT)
    assert await socket.closed(WAIT) == (4003, "token_expired")


async def test_ws_a_bad_refresh_is_an_error_and_the_session_goes_on_until_exp(
    server: ServerProcess,
) -> None:
    uid = user()
    socket, _ = await open_socket(server, token=short_token(uid))
    forged = short_token(uid, ttl=3600, secret="another-secret-that-is-also-32-bytes-long")
    error = await socket.ask({"type": "refresh", "token": forged})
    assert (error["type"], error["code"]) == ("error", "unauthorized")
    invalid = await socket.ask({"type": "refresh", "token": 42})
    assert (invalid["type"], invalid["code"]) == ("error", "invalid_message")
    await socket.quiet()
    await socket.expect("token_expiring", WAIT)
    assert await socket.closed(WAIT) == (4003, "token_expired")


async def test_ws_a_refresh_as_another_user_closes_the_session(server: ServerProcess) -> None:
    socket, _ = await open_socket(server, token=short_token(user(), ttl=60))
    await socket.send({"type": "refresh", "token": short_token(user(), ttl=60)})
    error = await socket.expect("error")
    assert error["code"] == "unauthorized"
    assert (await socket.closed())[0] == 1008


# --- gRPC --------------------------------------------------------------------------------------


async def connect(
    server: ServerProcess, channel: grpc.aio.Channel, tok: str
) -> tuple[Stream, stream_pb2.ConnectionEstablished]:
    stub = stream_pb2_grpc.NotificationStreamStub(channel)
    stream = Stream(stub.Connect(metadata=(("authorization", f"Bearer {tok}"),)))
    return stream, await stream.hello()


async def ended(stream: Stream) -> tuple[grpc.StatusCode, str | None]:
    """The status a stream ended with, and its ``tidings-error-code`` trailer."""
    code = await stream.status(WAIT)
    trailers = dict(await stream.call.trailing_metadata() or ())
    return code, trailers.get("tidings-error-code")


async def test_grpc_refresh_then_expiry(server: ServerProcess) -> None:
    uid = user()
    first = short_token(uid)
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        stream, _ = await connect(server, channel, first)
        warning = await stream.recv_kind("token_expiring", WAIT)
        assert warning.expires_at.seconds == exp_of(first)
        fresh = short_token(uid, ttl=3)
        await stream.send(refresh=stream_pb2.RefreshCommand(token=fresh))
        refreshed = await stream.recv_kind("token_refreshed")
        assert refreshed.expires_at.seconds == exp_of(fresh)
        warning = await stream.recv_kind("token_expiring", WAIT)
        assert warning.expires_at.seconds == exp_of(fresh)
        assert await ended(stream) == (grpc.StatusCode.UNAUTHENTICATED, "token_expired")


async def test_grpc_bad_refresh_then_another_users_refresh(server: ServerProcess) -> None:
    uid = user()
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        stream, _ = await connect(server, channel, short_token(uid, ttl=60))
        await stream.send(refresh=stream_pb2.RefreshCommand(token="not a token"))
        error = await stream.recv_kind("error")
        assert error.code == "unauthorized"
        await stream.send(ping=stream_pb2.PingCommand())
        await stream.recv_kind("pong")
        await stream.send(refresh=stream_pb2.RefreshCommand(token=short_token(user(), ttl=60)))
        assert await ended(stream) == (grpc.StatusCode.UNAUTHENTICATED, "unauthorized")


async def test_grpc_no_refresh_no_session(server: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        stream, _ = await connect(server, channel, short_token(user(), ttl=2))
        await stream.recv_kind("token_expiring", WAIT)
        assert await ended(stream) == (grpc.StatusCode.UNAUTHENTICATED, "token_expired")


async def test_insecure_sessions_do_not_expire(tmp_path_factory: pytest.TempPathFactory) -> None:
    db = tmp_path_factory.mktemp("insecure-refresh") / "tidings.db"
    args = ("--insecure", "--heartbeat-interval", "1.5")
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{db}") as node:
        uid = user()
        # A token is read without checking in insecure mode; its exp means nothing.
        tok = short_token(uid, ttl=1)
        socket, _ = await open_socket(node, token=tok)
        refreshed = await socket.ask({"type": "refresh", "token": tok})
        assert refreshed == {"type": "token_refreshed", "expires_at": None}
        await socket.expect("heartbeat", WAIT)  # 1.5 s in: past the token's exp
        assert time.time() > exp_of(tok)
        await socket.quiet()
        await socket.close()
