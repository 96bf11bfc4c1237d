"""RS256 / ES256 / JWKS auth (docs/PROTOCOL.md §2.2) on every surface of real servers.

Each token is tried on gRPC (``Connect`` and a unary call), the WebSocket and REST;
all three must agree. The identity provider's JWKS is served by the test
(tests/jwks_server.py), so it can rotate keys, go down, or hold its answer back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import pytest_asyncio
from tidings.v1 import stream_pb2, stream_pb2_grpc

from tests.auth_tokens import (
    ec_key,
    hs256_with_public_key,
    jwk,
    public_pem,
    rsa_key,
    signed,
    token,
    unsigned_token,
)
from tests.bridge.client import WAIT, open_socket, rest
from tests.harness import ServerProcess
from tests.jwks_server import JwksServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

RSA, OTHER_RSA, EC, OTHER_EC = rsa_key(), rsa_key(), ec_key(), ec_key()
ISSUER = "https://idp.test/"
AUDIENCE = "tidings"
IDP: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE}
ACCEPTED = {"grpc": True, "ws": True, "rest": True}
REFUSED = {"grpc": False, "ws": False, "rest": False}

Token = Callable[[str], str]


def db(tmp: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp / 'tidings.db'}"


async def grpc_accepts(server: ServerProcess, tok: str) -> bool:
    """Whether ``Connect`` greets the token's user; a unary call must agree."""
    md = (("authorization", f"Bearer {tok}"),)
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        stub = stream_pb2_grpc.NotificationStreamStub(channel)
        call = stub.Connect(metadata=md)
        try:
            async with asyncio.timeout(WAIT):
                first = await call.read()
            stream: object = "EOF"
            if isinstance(first, stream_pb2.ConnectResponse):
                stream = first.WhichOneof("kind")
        except grpc.aio.AioRpcError as exc:
            stream = exc.code()
        finally:
            call.cancel()
        try:
            await stub.GetUnreadCount(stream_pb2.GetUnreadCountRequest(), metadata=md, timeout=WAIT)
            unary: object = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            unary = exc.code()
    if stream == "connection_established":
        assert unary == grpc.StatusCode.OK
        return True
    assert stream == unary == grpc.StatusCode.UNAUTHENTICATED, (stream, unary)
    return False


async def ws_accepts(server: ServerProcess, tok: str) -> bool:
    """Whether the socket is greeted; a refusal is ``error`` ``unauthorized``, then 1008."""
    socket, _ = await open_socket(server, token=tok, greet=False)
    first = await socket.recv()
    if first["type"] == "connection_established":
        await socket.close()
        return True
    assert (first["type"], first["code"]) == ("error", "unauthorized"), first
    assert (await socket.closed())[0] == 1008
    return False


async def rest_accepts(server: ServerProcess, tok: str) -> bool:
    """Whether REST answers the token's user; a refusal is 401 ``unauthorized``."""
    async with rest(server, bearer=tok) as http:
        response = await http.get("/api/v1/notifications/unread_count")
    if response.status_code == 200:
        return True
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    return False


async def surfaces(server: ServerProcess, tok: str) -> dict[str, bool]:
    return {
        "grpc": await grpc_accepts(server, tok),
        "ws": await ws_accepts(server, tok),
        "rest": await rest_accepts(server, tok),
    }


def user() -> str:
    return "u-" + uuid.uuid4().hex[:12]


# --- one PEM public key ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rsa_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rsa")
    (tmp / "key.pem").write_text(public_pem(RSA))
    args = ("--jwt-public-key", str(tmp / "key.pem"))
    async with ServerProcess(*args, database_url=db(tmp)) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ec_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ec")
    (tmp / "key.pem").write_text(public_pem(EC))
    env = {"TIDINGS_JWT_PUBLIC_KEY": str(tmp / "key.pem")}
    async with ServerProcess(database_url=db(tmp), env=env) as server:
        yield server


RSA_TOKENS: dict[str, tuple[Token, bool]] = {
    "RS256 with the key": (lambda u: signed(u, RSA), True),
    "another RSA key": (lambda u: signed(u, OTHER_RSA), False),
    "ES256": (lambda u: signed(u, EC), False),
    "HS256 with the public key as secret": (
        lambda u: hs256_with_public_key(u, public_pem(RSA)),
        False,
    ),
    "HS256 with some secret": (lambda u: token(u), False),
    "alg none": (unsigned_token, False),
    "expired": (lambda u: signed(u, RSA, ttl=-60), False),
}

EC_TOKENS: dict[str, tuple[Token, bool]] = {
    "ES256 with the key": (lambda u: signed(u, EC), True),
    "another EC key": (lambda u: signed(u, OTHER_EC), False),
    "RS256": (lambda u: signed(u, RSA), False),
    "HS256 with the public key as secret": (
        lambda u: hs256_with_public_key(u, public_pem(EC)),
        False,
    ),
    "alg none": (unsigned_token, False),
}


@pytest.mark.parametrize("case", RSA_TOKENS)
async def test_rsa_public_key(rsa_server: ServerProcess, case: str) -> None:
    make, accepted = RSA_TOKENS[case]
    assert await surfaces(rsa_server, make(user())) == (ACCEPTED if accepted else REFUSED)


@pytest.mark.parametrize("case", EC_TOKENS)
async def test_ec_public_key(ec_server: ServerProcess, case: str) -> None:
    make, accepted = EC_TOKENS[case]
    assert await surfaces(ec_server, make(user())) == (ACCEPTED if accepted else REFUSED)


# --- a JWKS, with issuer and audience -----------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def idp() -> AsyncIterator[JwksServer]:
    async with JwksServer([jwk(RSA, "r1"), jwk(EC, "e1")]) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jwks_server(
    tmp_path_factory: pytest.TempPathFactory, idp: JwksServer
) -> AsyncIterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("jwks")
    args = ("--jwt-jwks-url", idp.url, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    async with ServerProcess(*args, database_url=db(tmp)) as server:
        yield server


JWKS_TOKENS: dict[str, tuple[Token, bool]] = {
    "RS256, kid r1": (lambda u: signed(u, RSA, kid="r1", **IDP), True),
    "ES256, kid e1": (lambda u: signed(u, EC, kid="e1", **IDP), True),
    "wrong issuer": (lambda u: signed(u, RSA, kid="r1", iss="https://evil/", aud=AUDIENCE), False),
    "wrong audience": (lambda u: signed(u, RSA, kid="r1", iss=ISSUER, aud="another"), False),
    "no audience": (lambda u: signed(u, RSA, kid="r1", iss=ISSUER), False),
    "another key, kid r1": (lambda u: signed(u, OTHER_RSA, kid="r1", **IDP), False),
    "RS256 under the EC key's kid": (lambda u: signed(u, RSA, kid="e1", **IDP), False),
    "unknown kid": (lambda u: signed(u, OTHER_RSA, kid="nobody", **IDP), False),
    "no kid": (lambda u: signed(u, RSA, **IDP), False),
    "HS256 with the public key as secret": (
        lambda u: hs256_with_public_key(u, public_pem(RSA), kid="r1"),
        False,
    ),
    "alg none": (
        lambda u: jwt.encode(
            {"sub": u, "exp": 4102444800, **IDP}, "", algorithm="none", headers={"kid": "r1"}
        ),
        False,
    ),
}


@pytest.mark.parametrize("case", JWKS_TOKENS)
async def test_jwks(jwks_server: ServerProcess, case: str) -> None:
    make, accepted = JWKS_TOKENS[case]
    assert await surfaces(jwks_server, make(user())) == (ACCEPTED if accepted else REFUSED)


async def test_jwks_rotation_reloads_once_without_blocking_anyone(tmp_path: Path) -> None:
    """A new kid is fetched and accepted; while the fetch waits, the server serves
    everyone else; an unknown kid right after does not fetch again (rate limit)."""
    async with (
        JwksServer([jwk(RSA, "r1")]) as provider,
        ServerProcess("--jwt-jwks-url", provider.url, database_url=db(tmp_path)) as server,
    ):
        old = signed(user(), RSA, kid="r1")
        assert await surfaces(server, old) == ACCEPTED
        assert provider.hits == 1, "loaded once, then served from memory"
        live, _ = await open_socket(server, token=old)

        provider.keys.append(jwk(OTHER_RSA, "r2"))  # the provider rotates...
        provider.gate.clear()  # ...and is slow to answer
        provider.requested.clear()
        rotated = signed(user(), OTHER_RSA, kid="r2")
        waiting = asyncio.create_task(grpc_accepts(server, rotated))
        async with asyncio.timeout(WAIT):
            await provider.requested.wait()
        await live.quiet()  # a session answers while the fetch is in flight
        assert await rest_accepts(server, old)
        assert not waiting.done()
        provider.gate.set()
        assert await waiting
        assert await ws_accepts(server, rotated) and await rest_accepts(server, rotated)
        assert provider.hits == 2

        stranger = signed(user(), rsa_key(), kid="r3")
        assert await surfaces(server, stranger) == REFUSED
        assert provider.hits == 2, "no second reload within 10 s"
        await live.close()


async def test_jwks_down_refuses_every_token(tmp_path: Path) -> None:
    async with (
        JwksServer([jwk(RSA, "r1")]) as provider,
        ServerProcess("--jwt-jwks-url", provider.url, database_url=db(tmp_path)) as server,
    ):
        provider.available = False
        assert await surfaces(server, signed(user(), RSA, kid="r1")) == REFUSED
        assert provider.hits >= 1, "it did try"
