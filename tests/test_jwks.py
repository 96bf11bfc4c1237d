"""The JWKS cache's rules (server/jwks.py) with a fake clock and a fake endpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from server.jwks import MAX_SIZE, Fetcher, JwksKeys, key_table
from tests.auth_tokens import ec_key, jwk, rsa_key
from tests.jwks_server import JwksServer

RSA = rsa_key()
RSA_2 = rsa_key()
EC = ec_key()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """What the fake JWKS URL answers; counts fetches. ``None`` keys: the endpoint is down."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys: list[dict[str, Any]] | None = list(keys)
        self.fetches = 0

    def __call__(self) -> Any:
        self.fetches += 1
        if self.keys is None:
            raise ConnectionError("connection refused")
        return {"keys": list(self.keys)}


def keys(endpoint: Endpoint, clock: Clock, algorithms: tuple[str, ...] = ("RS256",)) -> JwksKeys:
    return JwksKeys("http://idp.test/jwks", algorithms, clock=clock, fetch=endpoint)


async def settled(jwks: JwksKeys) -> None:
    """Wait for a background load to finish."""
    async with asyncio.timeout(5):
        while jwks._loading is not None:
            await asyncio.shield(jwks._loading)


async def test_the_set_is_loaded_on_first_use_and_then_served_from_memory() -> None:
    endpoint, clock = Endpoint(jwk(RSA, "a")), Clock()
    jwks = keys(endpoint, clock)
    assert jwks.cached("a", "RS256") is None  # nothing loaded, nothing started
    assert await jwks.key("a", "RS256") is not None
    for _ in range(100):
        assert jwks.cached("a", "RS256") is not None
        assert await jwks.key("a", "RS256") is not None
    assert endpoint.fetches == 1


async def test_an_unknown_kid_forces_one_reload_per_interval() -> None:
    endpoint, clock = Endpoint(jwk(RSA, "a")), Clock()
    jwks = keys(endpoint, clock)
    assert await jwks.key("a", "RS256") is not None
    endpoint.keys = [jwk(RSA, "a"), jwk(RSA_2, "b")]  # the provider rotates
    assert await jwks.key("b", "RS256") is not None, "the new kid was fetched and found"
    assert endpoint.fetches == 2
    clock.now += 9.9
    for kid in ("c", "d", "e"):  # an attacker's random kids cost nothing more
        assert await jwks.key(kid, "RS256") is None
    assert endpoint.fetches == 2
    clock.now += 0.1
    assert await jwks.key("c", "RS256") is None
    assert endpoint.fetches == 3


async def test_a_kid_for_another_algorithm_is_not_a_key() -> None:
    endpoint, clock = Endpoint(jwk(RSA, "a")), Clock()
    jwks = keys(endpoint, clock, ("RS256", "ES256"))
    assert await jwks.key("a", "RS256") is not None
    assert await jwks.key("a", "ES256") is None


async def test_fails_closed_while_the_endpoint_is_down_and_recovers_after_the_pause() -> None:
    endpoint, clock = Endpoint(), Clock()
    endpoint.keys = None
    jwks = keys(endpoint, clock)
    assert await jwks.key("a", "RS256") is None
    assert not jwks.loaded
    clock.now += 5
    assert await jwks.key("a", "RS256") is None
    assert endpoint.fetches == 1, "a failed load holds off the next one"
    endpoint.keys = [jwk(RSA, "a")]
    clock.now += 5
    assert await jwks.key("a", "RS256") is not None
    assert endpoint.fetches == 2


async def test_a_failed_or_empty_reload_keeps_the_keys_loaded_before() -> None:
    endpoint, clock = Endpoint(jwk(RSA, "a")), Clock()
    jwks = keys(endpoint, clock)
    assert await jwks.key("a", "RS256") is not None
    endpoint.keys = None
    assert await jwks.key("x", "RS256") is None  # forces a reload, which fails
    assert jwks.cached("a", "RS256") is not None
    clock.now += 10
    endpoint.keys = [jwk(EC, "e")]  # nothing usable for RS256: not a set to switch to
    assert await jwks.key("x", "RS256") is None
    assert endpoint.fetches == 3
    assert jwks.cached("a", "RS256") is not None


async def test_an_old_set_is_reloaded_in_the_background() -> None:
    endpoint, clock = Endpoint(jwk(RSA, "a")), Clock()
    jwks = keys(endpoint, clock)
    assert await jwks.key("a", "RS256") is not None
    endpoint.keys = [jwk(RSA_2, "b")]  # "a" was revoked
    clock.now += 299
    assert jwks.cached("a", "RS256") is not None
    await settled(jwks)
    assert endpoint.fetches == 1
    clock.now += 1
    assert jwks.cached("a", "RS256") is not None, "the call does not wait for the reload"
    await settled(jwks)
    assert endpoint.fetches == 2
    assert jwks.cached("a", "RS256") is None
    assert jwks.cached("b", "RS256") is not None


async def test_callers_waiting_for_keys_share_one_load() -> None:
    release = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    fetches = 0

    def slow_fetch() -> Any:
        nonlocal fetches
        fetches += 1
        loop.call_soon_threadsafe(started.set)
        assert release.wait(5)
        return {"keys": [jwk(RSA, "a")]}

    jwks = JwksKeys("http://idp.test/jwks", ("RS256",), clock=Clock(), fetch=slow_fetch)
    waiting = [asyncio.create_task(jwks.key("a", "RS256")) for _ in range(5)]
    async with asyncio.timeout(5):
        await started.wait()
    waiting[0].cancel()  # one caller goes away: the load goes on for the others
    release.set()
    results = await asyncio.gather(*waiting[1:])
    assert all(key is not None for key in results)
    assert fetches == 1


def test_the_table_keeps_only_signing_keys_that_fit_a_configured_algorithm() -> None:
    p384 = ec_key(ec.SECP384R1())
    document = {
        "keys": [
            jwk(RSA, "rsa"),
            jwk(RSA_2, "rsa-384", alg="RS384"),  # its own alg is not configured
            jwk(EC, "ec"),
            jwk(p384, "ec-384"),  # a P-384 key cannot verify ES256
            {**jwk(RSA, "enc"), "use": "enc"},
            {k: v for k, v in jwk(RSA, "x").items() if k != "kid"},
            {"kty": "RSA", "kid": "broken"},
            "not a key",
        ]
    }
    table = key_table(document, ("RS256", "ES256"))
    assert set(table) == {("rsa", "RS256"), ("ec", "ES256")}
    assert key_table({"keys": "nope"}, ("RS256",)) == {}


@pytest.mark.parametrize("answer", [[1, 2], "text", None])
async def test_an_answer_that_is_no_jwk_set_is_a_failed_load(answer: Any) -> None:
    jwks = JwksKeys("http://idp.test/jwks", ("RS256",), clock=Clock(), fetch=lambda: answer)
    assert await jwks.key("a", "RS256") is None
    assert not jwks.loaded


@pytest.mark.parametrize("declare_length", [True, False])
async def test_an_answer_over_the_size_bound_is_refused_and_logged(
    declare_length: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with JwksServer([jwk(RSA, "a")]) as endpoint:
        endpoint.declare_length = declare_length
        endpoint.padding = MAX_SIZE
        jwks = JwksKeys(endpoint.url, ("RS256",))
        with caplog.at_level(logging.WARNING, logger="tidings.auth"):
            assert await jwks.key("a", "RS256") is None
        assert not jwks.loaded  # fails closed
        (record,) = [r for r in caplog.records if r.name == "tidings.auth"]
        assert f"larger than {MAX_SIZE} bytes" in record.getMessage()
        assert "every token is refused" in record.getMessage()
        assert record.exc_info is None  # one clear line, no traceback

        endpoint.padding = MAX_SIZE - 1024  # within the bound, padding and all
        clock = Clock()
        jwks = JwksKeys(endpoint.url, ("RS256",), clock=clock)
        assert await jwks.key("a", "RS256") is not None
        await jwks.close()


async def test_a_redirect_is_a_failed_load() -> None:
    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.test/jwks\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        jwks = JwksKeys(f"http://127.0.0.1:{port}/jwks", ("RS256",))
        assert await jwks.key("a", "RS256") is None
        assert not jwks.loaded
    finally:
        server.close()
        await server.wait_closed()


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(ValueError, match="http"):
        Fetcher("file:///etc/passwd")
