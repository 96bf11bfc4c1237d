"""JWTs for tests, signed with the test secret (or deliberately not)."""

from __future__ import annotations

import time

import jwt

from tests.harness import TEST_SECRET


def token(
    user: str,
    *,
    admin: bool = False,
    ttl: float = 3600,
    secret: str = TEST_SECRET,
    algorithm: str = "HS256",
    **claims: object,
) -> str:
    """A token for ``user`` (``roles: ["admin"]`` when ``admin``) expiring in ``ttl`` seconds."""
    payload: dict[str, object] = {"sub": user, "exp": int(time.time() + ttl), **claims}
    if admin:
        payload["roles"] = ["admin"]
    return jwt.encode(payload, secret, algorithm=algorithm)


def unsigned_token(user: str) -> str:
    """A token with ``alg: none``: must always be refused."""
    return jwt.encode({"sub": user, "exp": int(time.time() + 3600)}, "", algorithm="none")
