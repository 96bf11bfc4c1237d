"""Who is calling: JWT verification (secure mode) or a named user (insecure mode), PROTOCOL.md §2.

Transports extract the raw credential (a bearer token, or the insecure user header)
and call ``Authenticator.authenticate``; they never look inside a token themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from server.engine.errors import InvalidArgument, PermissionDenied, Unauthenticated
from server.engine.models import check_user_id

DEFAULT_INSECURE_USER = "1"
ADMIN_ROLE = "admin"
#: RFC 7519 NumericDate claims: JSON numbers. PyJWT reads ``"exp": "4102444800"`` as a
#: number, which would let a token through whose expiry a stricter verifier refuses.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    is_admin: bool = False

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("this call needs the admin role")

    def require_self_or_admin(self, user_id: str) -> None:
        if user_id != self.user_id and not self.is_admin:
            raise PermissionDenied("only admins may look at another user")


class Authenticator:
    """Verifies HS256 tokens against a shared secret, or admits anyone in insecure mode."""

    def __init__(
        self, *, secret: str | None, insecure: bool, algorithms: tuple[str, ...] = ("HS256",)
    ) -> None:
        if not insecure and not secret:
            raise ValueError("a JWT secret is required unless insecure mode is on")
        self.insecure = insecure and not secret
        self._secret = secret
        self._algorithms = list(algorithms)

    def authenticate(self, token: str | None, insecure_user: str | None = None) -> Principal:
        """The caller behind ``token`` (or, insecure mode only, ``insecure_user``)."""
        if self.insecure:
            if token:
                return self._verify(token, verify_signature=False)
            user = insecure_user if insecure_user else DEFAULT_INSECURE_USER
            try:
                return Principal(check_user_id(user), is_admin=True)
            except InvalidArgument as exc:
                raise Unauthenticated(f"invalid user id: {exc.reason}") from exc
        if not token:
            raise Unauthenticated("a bearer token is required")
        return self._verify(token, verify_signature=True)

    def _verify(self, token: str, *, verify_signature: bool) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret or "",
                algorithms=self._algorithms,
                options={"require": ["exp", "sub"], "verify_signature": verify_signature},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
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
        return Principal(sub, is_admin=is_admin)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
