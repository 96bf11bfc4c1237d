"""Who is calling: JWT verification (secure mode) or a named user (insecure mode), PROTOCOL.md §2.

Transports extract the raw credential (a bearer token, or the insecure user header)
and await ``Authenticator.authenticate``; they never look inside a token themselves.
Keys: an HMAC secret, one PEM public key, or a JWKS URL (``server.jwks``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt
from jwt import PyJWK

from server.engine.errors import InvalidArgument, PermissionDenied, Unauthenticated
from server.engine.models import check_user_id
from server.jwks import JwksKeys
from server.keys import load_public_key, resolve_algorithms

DEFAULT_INSECURE_USER = "1"
ADMIN_ROLE = "admin"
#: RFC 7519 NumericDate claims: JSON numbers. PyJWT reads ``"exp": "4102444800"`` as a
#: number, which would let a token through whose expiry a stricter verifier refuses.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
#: A token verified once is taken at its word for this many seconds (never past its
#: ``exp``): a producer sends the same token with every call, and checking its signature
#: each time costs more than the rest of a create (docs/PROTOCOL.md §2.2).
VERIFIED_FOR = 60.0
#: Verified tokens remembered at most (the oldest are forgotten first).
VERIFIED_MAX = 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    is_admin: bool = False
    #: The token's ``exp`` and ``iat`` (POSIX seconds); None in insecure mode.
    expires_at: float | None = None
    issued_at: float | None = None

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("this call needs the admin role")

    def require_self_or_admin(self, user_id: str) -> None:
        if user_id != self.user_id and not self.is_admin:
            raise PermissionDenied("only admins may look at another user")


class Authenticator:
    """Verifies tokens (docs/PROTOCOL.md §2.2), or admits anyone in insecure mode (§2.3).

    One kind of key: an HMAC ``secret``, a PEM ``public_key`` (RSA or EC), or a
    ``jwks`` URL (or a ``JwksKeys``). The accepted ``algorithms`` are fixed here, by
    configuration, and must fit the key (the default is the key's own, see
    ``resolve_algorithms``); a token never chooses how it is verified. With ``issuer``
    or ``audience`` set, ``iss`` / ``aud`` are required and checked; without
    ``audience`` a token that carries an ``aud`` is refused (it was meant for someone
    else), with a message that names the claim.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        insecure: bool = False,
        public_key: str | None = None,
        jwks: str | JwksKeys | None = None,
        algorithms: Sequence[str] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        secure = bool(secret or public_key or jwks)
        if not insecure and not secure:
            raise ValueError("a JWT key is required unless insecure mode is on")
        self.insecure = insecure and not secure
        loaded = load_public_key(public_key) if public_key else None
        self._algorithms = resolve_algorithms(
            algorithms, secret=bool(secret), public_key=loaded, jwks=jwks is not None
        )
        self._key: object = secret or loaded or ""
        if isinstance(jwks, str):
            jwks = JwksKeys(jwks, self._algorithms)
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._required = ["exp", "sub"]
        if issuer:
            self._required.append("iss")
        if audience:
            self._required.append("aud")
        self._now = now
        #: token → (its caller, the POSIX time until which it is taken at its word)
        self._verified: dict[str, tuple[Principal, float]] = {}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms a token may be signed with."""
        return self._algorithms

    async def authenticate(self, token: str | None, insecure_user: str | None = None) -> Principal:
        """The caller behind ``token`` (or, insecure mode only, ``insecure_user``).

        Returns at once unless the keys come from a JWKS that must be (re)loaded. A token
        verified in the last ``VERIFIED_FOR`` seconds is not verified again (its expiry
        still is).
        """
        if self.insecure:
            if token:
                return self._verify(token, "", verify_signature=False)
            user = insecure_user if insecure_user else DEFAULT_INSECURE_USER
            try:
                return Principal(check_user_id(user), is_admin=True)
            except InvalidArgument as exc:
                raise Unauthenticated(f"invalid user id: {exc.reason}") from exc
        if not token:
            raise Unauthenticated("a bearer token is required")
        now = self._now()
        if (known := self._verified.get(token)) is not None:
            principal, trusted_until = known
            if principal.expires_at is not None and now >= principal.expires_at:
                del self._verified[token]
                raise Unauthenticated("the token has expired")
            if now < trusted_until:
                return principal
            del self._verified[token]  # verified again below, with the keys of now
        if self._jwks is None:
            principal = self._verify(token, self._key, verify_signature=True)
        else:
            principal = self._verify(token, await self._jwks_key(token), verify_signature=True)
        if len(self._verified) >= VERIFIED_MAX:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, now + VERIFIED_FOR)
        return principal

    async def _jwks_key(self, token: str) -> PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise Unauthenticated(f"invalid token: the algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthenticated("invalid token: a kid is required (keys come from a JWKS)")
        assert self._jwks is not None
        key = self._jwks.cached(kid, alg) or await self._jwks.key(kid, alg)
        if key is None:
            raise Unauthenticated(f"invalid token: no {alg} key with kid {kid!r}")
        return key

    def _verify(self, token: str, key: object, *, verify_signature: bool) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]  # a secret, a public key or a PyJWK
                algorithms=self._algorithms,
                issuer=self._issuer if verify_signature else None,
                audience=self._audience if verify_signature else None,
                options={"require": self._required, "verify_signature": verify_signature},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            if self._audience is None:  # a token meant for a given audience, not for us
                reason = "it has an aud claim, and this server is configured with no audience"
            else:
                reason = f"its aud claim does not name {self._audience!r}"
            raise Unauthenticated(f"invalid token: {reason}") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        for name in NUMERIC_DATE_CLAIMS:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise Unauthenticated(f"invalid token: the {name} claim must be a JSON number")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 1 <= len(sub) <= 128:
            raise Unauthenticated("the token's sub must be a user id of 1-128 characters")
        roles = claims.get("roles", [])
        is_admin = (
            self.insecure
            or (isinstance(roles, list) and ADMIN_ROLE in roles)
            or roles == ADMIN_ROLE
        )
        if not verify_signature:
            return Principal(sub, is_admin=is_admin)
        iat = claims.get("iat")
        return Principal(
            sub,
            is_admin=is_admin,
            expires_at=float(claims["exp"]),
            issued_at=float(iat) if iat is not None else None,
        )

    async def close(self) -> None:
        """Stop background work (a JWKS load in progress)."""
        if self._jwks is not None:
            await self._jwks.close()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
