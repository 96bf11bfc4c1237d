"""The Python Subscriber keeps a session alive past its token through ``token_provider``
(docs/PROTOCOL.md §2.7), against a real secure server. Tokens live a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from tidings.client import (
    AuthenticationError,
    Backoff,
    Connected,
    Disconnected,
    DisconnectReason,
    Publisher,
    Subscriber,
)

from tests.clients.conftest import StateLog
from tests.harness import TEST_SECRET, ServerProcess

FAST = Backoff(base=0.05, cap=0.2)
ADMIN = jwt.encode({"sub": "ops", "exp": int(time.time()) + 3600, "roles": ["admin"]}, TEST_SECRET)


def short_token(user: str, ttl: int = 8) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl}, TEST_SECRET)


class Provider:
    """Hands out tokens (``bad`` ones where asked) and lets the test await the n-th call."""

    def __init__(self, user: str, *, bad_calls: tuple[int, ...] = ()) -> None:
        self.user = user
        self.calls = 0
        self.bad_calls = bad_calls
        self.expiries: list[int] = []
        self._called = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self._called.set()
        if self.calls in self.bad_calls:
            return "not-a-jwt"
        token = short_token(self.user)
        self.expiries.append(jwt.decode(token, options={"verify_signature": False})["exp"])
        return token

    async def called(self, times: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while self.calls < times:
                self._called.clear()
                await self._called.wait()


@pytest.fixture
async def secure(database_url: str) -> AsyncIterator[ServerProcess]:
    args = ("--jwt-secret", TEST_SECRET)
    process = await ServerProcess(*args, role="grpc", database_url=database_url).start()
    try:
        yield process
    finally:
        await process.kill()


async def test_the_session_outlives_its_first_token(secure: ServerProcess) -> None:
    provider = Provider("alice")
    log = StateLog()
    subscriber = Subscriber(secure.grpc_addr, token_provider=provider, backoff=FAST, on_state=log)
    async with asyncio.timeout(50), subscriber, Publisher(secure.grpc_addr, token=ADMIN) as pub:
        await subscriber.wait_connected()
        await provider.called(3)  # connect, a refresh, and the next refresh's warning
        assert time.time() > provider.expiries[0], "the first token has run out"
        created = await pub.create("alice", "t", "still here")
        assert (await anext(subscriber)).id == created.notification.id
    assert len(log.of(Connected)) == 1
    assert [e.reason for e in log.of(Disconnected)] == [DisconnectReason.CLOSED]


async def test_a_missed_refresh_reconnects_with_a_fresh_token(secure: ServerProcess) -> None:
    provider = Provider("bob", bad_calls=(2,))  # the refresh fails: the session ends at exp
    log = StateLog()
    subscriber = Subscriber(secure.grpc_addr, token_provider=provider, backoff=FAST, on_state=log)
    async with asyncio.timeout(40), subscriber:
        await subscriber.wait_connected()
        ended = await log.wait_for(lambda e: isinstance(e, Disconnected), timeout=20)
        assert isinstance(ended, Disconnected) and ended.reason is DisconnectReason.TOKEN_EXPIRED
        await log.wait_for(lambda e: isinstance(e, Connected), count=2, timeout=20)
    assert provider.calls >= 3


async def test_without_a_provider_an_expired_session_is_an_authentication_error(
    secure: ServerProcess,
) -> None:
    subscriber = Subscriber(secure.grpc_addr, token=short_token("carol", ttl=2), backoff=FAST)
    async with asyncio.timeout(20), subscriber:
        await subscriber.wait_connected()
        with pytest.raises(AuthenticationError):
            await anext(subscriber)
