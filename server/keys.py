"""JWT keys and the algorithms that fit them: checked at start-up (``server.config``) and
used by the authenticator (``server.auth``). A leaf: it imports nothing of ``server``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

#: HMAC algorithms: for a shared secret only (never with a public key: alg confusion).
SECRET_ALGORITHMS = ("HS256", "HS384", "HS512")
#: What a JWKS accepts unless ``--jwt-algorithms`` says otherwise.
JWKS_ALGORITHMS = ("RS256", "ES256")
#: An EC key's own algorithm, by curve.
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def load_public_key(pem: str) -> PublicKeyTypes:
    """The public key of a PEM ``PUBLIC KEY`` block or certificate (raises ``ValueError``)."""
    data = pem.encode()
    with contextlib.suppress(ValueError, UnsupportedAlgorithm):
        return serialization.load_pem_public_key(data)
    with contextlib.suppress(ValueError, UnsupportedAlgorithm):
        return x509.load_pem_x509_certificate(data).public_key()
    raise ValueError(
        "not a PEM public key (-----BEGIN PUBLIC KEY-----) or certificate; "
        "give the public half of the signing key"
    )


def resolve_algorithms(
    requested: Sequence[str] | None,
    *,
    secret: bool,
    public_key: PublicKeyTypes | None,
    jwks: bool,
) -> tuple[str, ...]:
    """The algorithms to accept with this kind of key: ``requested`` if each fits, else
    the default (HS256 for a secret, the public key's own — RS256 for RSA, ES256 for a
    P-256 EC key —, RS256 and ES256 for a JWKS). Raises ``ValueError`` saying what does
    not fit."""
    if sum((secret, public_key is not None, jwks)) > 1:
        raise ValueError("give one kind of key: a secret, a public key or a JWKS URL")
    supported = set(get_default_algorithms()) - {"none"}
    if not requested:
        if public_key is not None:
            return (_own_algorithm(public_key),)
        return JWKS_ALGORITHMS if jwks else SECRET_ALGORITHMS[:1]
    algorithms = tuple(dict.fromkeys(requested))
    for alg in algorithms:
        if alg not in supported:
            raise ValueError(f"unknown algorithm {alg!r} (one of {', '.join(sorted(supported))})")
        if secret and alg not in SECRET_ALGORITHMS:
            raise ValueError(f"{alg} needs a public key or a JWKS URL, not a secret")
        if not secret and alg in SECRET_ALGORITHMS:
            raise ValueError(f"{alg} needs a secret; a public key must never be used as one")
        if public_key is not None:
            try:
                get_default_algorithms()[alg].prepare_key(public_key)
            except (InvalidKeyError, TypeError, ValueError):
                raise ValueError(
                    f"{alg} does not fit the public key ({_describe(public_key)})"
                ) from None
    return algorithms


def _own_algorithm(key: PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
        return EC_ALGORITHMS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported public key ({_describe(key)}): give an RSA or EC key")


def _describe(key: PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA, {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC, curve {key.curve.name}"
    return type(key).__name__
