"""JWTs for tests, signed with the test secret (or deliberately not)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

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


# --- asymmetric keys (docs/PROTOCOL.md §2.2) ----------------------------------------------

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def public_pem(key: SigningKey) -> str:
    """The PEM ``PUBLIC KEY`` of ``key``: what an operator gives ``--jwt-public-key``."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: SigningKey, kid: str, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of ``key`` as a JWKS lists it."""
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    data.update(kid=kid, use="sig")
    if alg is not None:
        data["alg"] = alg
    return data


def signed(
    user: str,
    key: SigningKey,
    *,
    alg: str | None = None,
    kid: str | None = None,
    ttl: float = 3600,
    **claims: object,
) -> str:
    """A token for ``user`` signed with a private ``key`` (RS256 or ES256 by default)."""
    payload: dict[str, object] = {"sub": user, "exp": int(time.time() + ttl), **claims}
    algorithm = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def hs256_with_public_key(user: str, pem: str, *, kid: str | None = None) -> str:
    """The alg-confusion attack: an HS256 token whose HMAC secret is the server's public
    key (bytes anyone can read). PyJWT refuses to make one, so it is built by hand."""
    header: dict[str, object] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    payload = {"sub": user, "exp": int(time.time() + 3600)}
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    mac = hmac.new(pem.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(mac)).decode()
