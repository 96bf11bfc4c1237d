"""The WebSocket messages of docs/PROTOCOL.md §5.2 and §5.3 as pydantic models.

Client → server: ``ClientMessage``, a union discriminated by ``type``, validates every
command frame (``bridge.jsonwire.decode_command``). Server → client: one model per
message, which only documents and checks: the bridge writes those frames itself
(notification frames pre-encoded once per notification, never through pydantic), and
the tests hold every frame it writes to these models. ``json_schema()`` emits both.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from bridge.schemas import Notification

#: ISO-8601 UTC with milliseconds (docs/PROTOCOL.md §3).
Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        description="ISO-8601 UTC with milliseconds, e.g. 2026-11-25T22:52:07.123Z",
    ),
]


# --- client → server ------------------------------------------------------------------------


class _Command(BaseModel):
    # Strict: a JSON number is not a string, true is not 1. Unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Ping(_Command):
    """Asks for a ``pong``."""

    type: Literal["ping"]


class MarkRead(_Command):
    """Marks one of the caller's notifications read."""

    type: Literal["mark_read"]
    notification_id: int = Field(gt=0, description="a positive integer")


class Subscribe(_Command):
    """Adds types to the session's filter (docs/PROTOCOL.md §5.4)."""

    type: Literal["subscribe"]
    notification_types: list[str] = Field(description="a list of strings")


class Unsubscribe(_Command):
    """Takes types out of the session's filter (docs/PROTOCOL.md §5.4)."""

    type: Literal["unsubscribe"]
    notification_types: list[str] = Field(description="a list of strings")


class Refresh(_Command):
    """A fresh token for this session, for the same user (docs/PROTOCOL.md §2.7)."""

    type: Literal["refresh"]
    token: str = Field(min_length=1, description="a non-empty string")


class MarkSeen(_Command):
    """Marks the caller's notifications seen up to ``up_to_id`` (docs/PROTOCOL.md §5.3)."""

    type: Literal["mark_seen"]
    up_to_id: int | None = Field(
        default=None, ge=0, description="a non-negative integer (absent or 0: the newest)"
    )


class MarkAllRead(_Command):
    """Marks the caller's unread notifications read (of one type, up to an id)."""

    type: Literal["mark_all_read"]
    notification_type: str | None = Field(
        default=None, description="a string (absent or null: every type)"
    )
    up_to_id: int | None = Field(
        default=None, ge=0, description="a non-negative integer (absent or 0: the newest)"
    )


class Archive(_Command):
    """Archives one of the caller's notifications."""

    type: Literal["archive"]
    notification_id: int = Field(gt=0, description="a positive integer")


class Unarchive(_Command):
    """Brings one of the caller's archived notifications back."""

    type: Literal["unarchive"]
    notification_id: int = Field(gt=0, description="a positive integer")


class Delete(_Command):
    """Deletes one of the caller's notifications."""

    type: Literal["delete"]
    notification_id: int = Field(gt=0, description="a positive integer")


class GetCounts(_Command):
    """Asks for a ``counts`` (this session only)."""

    type: Literal["get_counts"]


class UpdatePreferences(_Command):
    """Replaces the caller's muted types."""

    type: Literal["update_preferences"]
    muted_types: list[str] = Field(description="a list of strings")


Command = (
    Ping
    | MarkRead
    | Subscribe
    | Unsubscribe
    | Refresh
    | MarkSeen
    | MarkAllRead
    | Archive
    | Unarchive
    | Delete
    | GetCounts
    | UpdatePreferences
)
#: Every client frame: one command, chosen by its ``type``.
ClientMessage: Final = TypeAdapter[Command](Annotated[Command, Field(discriminator="type")])


# --- server → client ------------------------------------------------------------------------


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ConnectionEstablished(_Event):
    """The first message of every session."""

    type: Literal["connection_established"]
    user_id: str
    connection_id: str = Field(description="unique across the cluster")
    heartbeat_interval: float = Field(description="seconds")
    queued: int = Field(ge=0, description="how many replayed notifications follow")
    truncated: bool
    server_time: Timestamp


class NotificationEvent(_Event):
    """A notification, replayed or live."""

    type: Literal["notification"]
    notification: Notification


class Heartbeat(_Event):
    """Every ``heartbeat_interval`` seconds."""

    type: Literal["heartbeat"]
    timestamp: Timestamp


class Pong(_Event):
    """Answers ``ping``."""

    type: Literal["pong"]
    timestamp: Timestamp


class NotificationMarkedRead(_Event):
    """One of the user's notifications was marked read (by any session or call)."""

    type: Literal["notification_marked_read"]
    notification_id: int = Field(gt=0)


class SubscriptionUpdated(_Event):
    """Answers ``subscribe`` and ``unsubscribe``: the whole filter, type lists sorted."""

    type: Literal["subscription_updated"]
    notification_types: list[str] | None = Field(description="null: all but the excluded")
    excluded_types: list[str]


class TokenExpiring(_Event):
    """The session's token expires soon: send ``refresh`` before ``expires_at``."""

    type: Literal["token_expiring"]
    expires_at: Timestamp


class TokenRefreshed(_Event):
    """Answers ``refresh``: the session now ends at the new token's expiry."""

    type: Literal["token_refreshed"]
    expires_at: Timestamp | None = Field(description="null: the new token never expires")


class Error(_Event):
    """A client message could not be honoured, or (then closed) the connection refused."""

    type: Literal["error"]
    code: str
    message: str


class NotificationsSeen(_Event):
    """The user's notifications up to ``up_to_id`` are seen (by any session or call)."""

    type: Literal["notifications_seen"]
    up_to_id: int = Field(ge=0)


class NotificationsMarkedRead(_Event):
    """The user's unread notifications up to ``up_to_id`` (of ``notification_type`` only,
    unless null) are read (by any session or call)."""

    type: Literal["notifications_marked_read"]
    up_to_id: int = Field(ge=0)
    notification_type: str | None = Field(description="null: every type")


class NotificationArchived(_Event):
    """One of the user's notifications was archived."""

    type: Literal["notification_archived"]
    notification_id: int = Field(gt=0)


class NotificationUnarchived(_Event):
    """One of the user's notifications was unarchived."""

    type: Literal["notification_unarchived"]
    notification_id: int = Field(gt=0)


class NotificationDeleted(_Event):
    """One of the user's notifications was deleted."""

    type: Literal["notification_deleted"]
    notification_id: int = Field(gt=0)


class TypeCounts(_Event):
    unread: int = Field(ge=0)
    unseen: int = Field(ge=0)


class Counts(_Event):
    """Answers ``get_counts``: not archived, not expired; muted types left out of the
    totals (unless sent with ``ignore_mutes``) but listed in ``by_type``."""

    type: Literal["counts"]
    unread: int = Field(ge=0)
    unseen: int = Field(ge=0)
    by_type: dict[str, TypeCounts] = Field(description="every type with a nonzero count")


class PreferencesUpdated(_Event):
    """The user's muted types changed (by any session or call); sorted."""

    type: Literal["preferences_updated"]
    muted_types: list[str]


Event = (
    ConnectionEstablished
    | NotificationEvent
    | Heartbeat
    | Pong
    | NotificationMarkedRead
    | SubscriptionUpdated
    | TokenExpiring
    | TokenRefreshed
    | Error
    | NotificationsSeen
    | NotificationsMarkedRead
    | NotificationArchived
    | NotificationUnarchived
    | NotificationDeleted
    | Counts
    | PreferencesUpdated
)
#: Every server frame: one event, chosen by its ``type``.
ServerMessage: Final = TypeAdapter[Event](Annotated[Event, Field(discriminator="type")])


def json_schema() -> dict[str, Any]:
    """The JSON Schema of both directions: ``{"client": …, "server": …}``."""
    return {"client": ClientMessage.json_schema(), "server": ServerMessage.json_schema()}
