"""Token verification with asymmetric keys (server/auth.py, docs/PROTOCOL.md §2.2), in process.

The same matrix runs against real servers on every surface in tests/test_auth_surfaces.py;
here are the rules that need no network: which algorithms fit which key, and that a
token can never pick its own way of being verified.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from server.auth import VERIFIED_FOR, VERIFIED_MAX, Authenticator
from server.engine.errors import Unauthenticated
from server.jwks import JwksKeys
from server.keys import load_public_key, resolve_algorithms
from tests.auth_tokens import (
    ec_key,
    hs256_with_public_key,
    jwk,
    public_pem,
    rsa_key,
    signed,
    token,
)
from tests.harness import TEST_SECRET

RSA = rsa_key()
EC = ec_key()
OTHER_RSA = rsa_key()


async def refused(auth: Authenticator, tok: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        await auth.authenticate(tok)
    return err.value.message


async def test_an_rsa_public_key_verifies_rs256_and_nothing_else() -> None:
    pem = public_pem(RSA)
    auth = Authenticator(public_key=pem)
    assert auth.algorithms == ("RS256",)
    user = await auth.authenticate(signed("42", RSA, roles=["admin"]))
    assert (user.user_id, user.is_admin) == ("42", True)
    await refused(auth, signed("42", OTHER_RSA))
    await refused(auth, signed("42", RSA, alg="RS384"))
    await refused(auth, signed("42", EC))
    assert "not allowed" in await refused(auth, hs256_with_public_key("42", pem))
    await refused(auth, jwt.encode({"sub": "42", "exp": 4102444800}, "", algorithm="none"))
    await refused(auth, signed("42", RSA, ttl=-60))
    await refused(auth, token("42"))  # an HS256 token signed with some secret


async def test_an_ec_public_key_verifies_es256() -> None:
    pem = public_pem(EC)
    auth = Authenticator(public_key=pem)
    assert auth.algorithms == ("ES256",)
    assert (await auth.authenticate(signed("7", EC))).user_id == "7"
    await refused(auth, signed("7", ec_key()))
    await refused(auth, signed("7", RSA))
    await refused(auth, hs256_with_public_key("7", pem))


async def test_issuer_and_audience_are_required_and_checked() -> None:
    auth = Authenticator(public_key=public_pem(RSA), issuer="https://idp", audience="tidings")
    good: dict[str, Any] = {"iss": "https://idp", "aud": "tidings"}
    assert (await auth.authenticate(signed("1", RSA, **good))).user_id == "1"
    assert await auth.authenticate(signed("1", RSA, **{**good, "aud": ["x", "tidings"]}))
    claims: dict[str, Any]
    for claims in (
        {"aud": "tidings"},
        {"iss": "https://idp"},
        {**good, "iss": "https://evil"},
        {**good, "aud": "another-service"},
    ):
        await refused(auth, signed("1", RSA, **claims))


async def test_an_audience_refusal_names_the_aud_claim() -> None:
    unset = Authenticator(public_key=public_pem(RSA))
    assert (await unset.authenticate(signed("1", RSA))).user_id == "1"
    message = await refused(unset, signed("1", RSA, aud="tidings"))
    assert "aud" in message and "no audience" in message  # meant for someone else
    configured = Authenticator(public_key=public_pem(RSA), audience="tidings")
    message = await refused(configured, signed("1", RSA, aud="another-service"))
    assert "aud" in message and "'tidings'" in message
    assert "aud" in await refused(configured, signed("1", RSA))


async def test_with_a_jwks_the_kid_picks_the_key_and_the_configuration_the_algorithm() -> None:
    fetches: list[int] = []

    def fetch() -> Any:
        fetches.append(1)
        return {"keys": [jwk(RSA, "r"), jwk(EC, "e")]}

    auth = Authenticator(jwks=JwksKeys("http://idp.test/jwks", ("RS256", "ES256"), fetch=fetch))
    # Refused before any key is looked up (so before any fetch): alg, then kid.
    await refused(auth, hs256_with_public_key("1", public_pem(RSA), kid="r"))
    none = jwt.encode({"sub": "1", "exp": 4102444800}, "", algorithm="none", headers={"kid": "r"})
    await refused(auth, none)
    assert "kid" in await refused(auth, signed("1", RSA))
    assert fetches == []
    assert (await auth.authenticate(signed("1", RSA, kid="r"))).user_id == "1"
    assert (await auth.authenticate(signed("2", EC, kid="e"))).user_id == "2"
    assert len(fetches) == 1
    await refused(auth, signed("1", OTHER_RSA, kid="r"))
    await refused(auth, signed("1", RSA, kid="e"))  # the EC key's kid on an RS256 token


@pytest.mark.parametrize(
    ("requested", "kind", "expected"),
    [
        (None, "secret", ("HS256",)),
        (["HS512"], "secret", ("HS512",)),
        (None, "rsa", ("RS256",)),
        (["RS256", "PS256"], "rsa", ("RS256", "PS256")),
        (None, "ec", ("ES256",)),
        (None, "ec384", ("ES384",)),
        (None, "jwks", ("RS256", "ES256")),
        (["ES256"], "jwks", ("ES256",)),
    ],
)
def test_default_and_requested_algorithms(
    requested: list[str] | None, kind: str, expected: tuple[str, ...]
) -> None:
    assert resolve_algorithms(requested, **_key(kind)) == expected


@pytest.mark.parametrize(
    ("requested", "kind", "needle"),
    [
        (["RS256"], "secret", "not a secret"),
        (["HS256"], "rsa", "must never be used"),
        (["HS256"], "jwks", "must never be used"),
        (["ES256"], "rsa", "does not fit"),
        (["RS256"], "ec", "does not fit"),
        (["ES256"], "ec384", "does not fit"),
        (["none"], "rsa", "unknown algorithm"),
        (["RS999"], "jwks", "unknown algorithm"),
    ],
)
def test_algorithms_that_do_not_fit_the_key_are_refused(
    requested: list[str], kind: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        resolve_algorithms(requested, **_key(kind))


def _key(kind: str) -> dict[str, Any]:
    public_key = {
        "rsa": RSA.public_key(),
        "ec": EC.public_key(),
        "ec384": ec_key(ec.SECP384R1()).public_key(),
    }.get(kind)
    return {"secret": kind == "secret", "public_key": public_key, "jwks": kind == "jwks"}


def test_a_private_key_or_garbage_is_not_a_public_key() -> None:
    from cryptography.hazmat.primitives import serialization

    private = RSA.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    for text in (private, "hello", ""):
        with pytest.raises(ValueError, match="public key"):
            load_public_key(text)


class Decodes:
    """Counts the signature checks ``server.auth`` makes (``jwt.decode`` calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = jwt.decode

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr("server.auth.jwt.decode", counted)


class Clock:
    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at


async def test_a_token_verified_once_is_taken_at_its_word_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decodes, clock = Decodes(monkeypatch), Clock()
    auth = Authenticator(secret=TEST_SECRET, now=clock)
    tok = token("42", admin=True)
    first = await auth.authenticate(tok)
    assert first.user_id == "42" and first.is_admin
    for _ in range(5):
        assert await auth.authenticate(tok) == first
    assert decodes.count == 1
    clock.at += VERIFIED_FOR  # then verified again
    assert await auth.authenticate(tok) == first
    assert decodes.count == 2


async def test_a_remembered_token_still_expires_at_its_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes, clock = Decodes(monkeypatch), Clock()
    auth = Authenticator(secret=TEST_SECRET, now=clock)
    tok = token("42", ttl=30)
    await auth.authenticate(tok)
    clock.at += 31  # within VERIFIED_FOR, past exp
    assert await refused(auth, tok) == "the token has expired"
    assert decodes.count == 1


async def test_refused_tokens_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = Decodes(monkeypatch)
    auth = Authenticator(secret=TEST_SECRET)
    forged = token("42", admin=True, secret="another secret of 32 bytes or more")
    for _ in range(3):
        assert (await refused(auth, forged)).startswith("invalid token")
    assert decodes.count == 3


async def test_the_tokens_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = Decodes(monkeypatch)
    auth = Authenticator(secret=TEST_SECRET)
    tokens = [token(f"u{i}") for i in range(VERIFIED_MAX + 1)]
    for tok in tokens:
        await auth.authenticate(tok)
    assert decodes.count == VERIFIED_MAX + 1
    await auth.authenticate(tokens[-1])  # remembered
    assert decodes.count == VERIFIED_MAX + 1
    await auth.authenticate(tokens[0])  # the oldest, forgotten: verified again
    assert decodes.count == VERIFIED_MAX + 2
