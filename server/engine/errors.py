"""The domain's one exception tree.

Edges translate these and nothing else: the gRPC servicer to status codes, the bridge
to WebSocket error messages, close codes and HTTP statuses. Each error carries a
stable machine-readable ``code`` (the one docs/PROTOCOL.md §5.5 names) and says whose fault it
was: a ``ClientError`` is the caller's, anything else is ours.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(TidingsError):
    """The caller asked for something wrong; retrying the same request will fail again."""


class InvalidArgument(ClientError):
    """A field of a request is missing or malformed. ``field`` names it."""

    code = "invalid_message"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFound(ClientError):
    """No such notification for this user (another user's id looks exactly the same)."""

    code = "not_found"


class Unauthenticated(ClientError):
    """No credentials, or credentials that do not verify."""

    code = "unauthorized"


class PermissionDenied(ClientError):
    """Verified credentials that do not allow this call."""

    code = "forbidden"


class RateLimited(ClientError):
    """The session sent more messages than its rate allows; the message was ignored."""

    code = "rate_limited"


class Unavailable(TidingsError):
    """The engine is shutting down or not started; try again elsewhere or later."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The store cannot be reached (connection refused, lost, database gone); retry later.

    ``reason`` says what the driver reported, for operators; clients get ``message``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("the notification store is unavailable; try again later")
        self.reason = reason
