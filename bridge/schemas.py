"""The REST bodies and queries of docs/PROTOCOL.md §6 as pydantic models.

Request models validate (through quart-schema) before any engine call, so a bad body
is refused whole and nothing is half-written; they also feed ``/openapi.json``.
Bodies are strict (a JSON number is not a string) except that user ids given as
JSON integers become strings (§2). Response models only document the answers: the
handlers encode those with orjson directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

INT64_MAX = 2**63 - 1
#: Text fields may hold any character but NUL (the engine refuses it: PostgreSQL cannot store it).
NO_NUL = "^[^\\x00]*$"


def _int_to_str(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: With ``StringConstraints``: no NUL character, checked and documented.
_NO_NUL_CHECK = AfterValidator(_no_nul)
_NO_NUL_DOC = Field(json_schema_extra={"pattern": NO_NUL})

UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    _NO_NUL_CHECK,
    BeforeValidator(_int_to_str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
                {"type": "integer"},
            ],
            "description": "1–128 characters; a JSON integer is accepted and becomes a string",
        }
    ),
]
NotificationType = Annotated[
    str, StringConstraints(min_length=1, max_length=64), _NO_NUL_CHECK, _NO_NUL_DOC
]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200), _NO_NUL_CHECK, _NO_NUL_DOC]
MessageText = Annotated[str, StringConstraints(max_length=4000), _NO_NUL_CHECK, _NO_NUL_DOC]
PriorityName = Literal["low", "normal", "high", "urgent"]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255), _NO_NUL_CHECK, _NO_NUL_DOC
]


def _strict_bool(value: object) -> object:
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


QueryBool = Annotated[bool, BeforeValidator(_strict_bool)]

TIMESTAMP_DOC = "ISO-8601 with a time zone, e.g. 2026-11-25T22:52:07.123Z"


def _instant(value: object) -> object:
    """An ISO-8601 timestamp with a zone → an aware UTC datetime (else a ValueError)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string: {TIMESTAMP_DOC}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be {TIMESTAMP_DOC}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"must have a time zone: {TIMESTAMP_DOC}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


#: A timestamp with a zone, as UTC (strict models take the parsed datetime).
Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "description": TIMESTAMP_DOC}),
]


def _query_list(value: object) -> object:
    """A query list: comma-separated, repeated, or both (``a,b`` or ``x=a&x=b``); empty
    items are dropped."""
    parts: list[object] = value if isinstance(value, list) else [value]
    texts = [part for part in parts if isinstance(part, str)]
    if len(texts) != len(parts):
        return value
    return [item for text in texts for item in text.split(",") if item]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Content(_Body):
    type: NotificationType
    title: Title
    message: MessageText | None = Field(default=None, description='default ""')
    data: dict[str, Any] | None = Field(default=None, description="a JSON object; default {}")
    priority: PriorityName | None = Field(default=None, description="default normal")
    expires_at: Instant | None = Field(
        default=None,
        description="must be later than now (else 422); afterwards the notification is "
        "never delivered, replayed, listed or counted. Default: never",
    )
    ignore_mutes: bool = Field(
        default=False, description="delivered and counted even where its type is muted"
    )


class CreateNotification(_Content):
    """``POST /api/v1/notifications``: one notification for one user."""

    user_id: UserId
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="a retry with the same key and user returns the first notification "
        "(the Idempotency-Key header is accepted too)",
    )


BATCH_MAX = 1000


class CreateNotifications(_Body):
    """``POST /api/v1/notifications/batch``: 1–1000 notifications, for any users, created
    in one transaction — all of them, or (when any item is invalid) none.

    Each item has the fields of a single create, its own optional ``idempotency_key``
    included. An item whose key matches an earlier notification of its user, or an
    earlier item of the same batch, yields that notification with ``created: false``
    and creates nothing (a repeated key inside a batch is deduplicated, not refused),
    so a retried batch answers with the same ids. A bad item is a 422 whose ``field``
    names it, e.g. ``notifications[3].title``. The body is at most 1 MiB.
    """

    notifications: list[CreateNotification] = Field(min_length=1, max_length=BATCH_MAX)


class Broadcast(_Content):
    """``POST /api/v1/notifications/broadcast``: ``user_ids``, or ``all: true``."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["user_ids"], "properties": {"user_ids": {"type": "array"}}},
                {"required": ["all"], "properties": {"all": {"const": True}}},
            ]
        }
    )

    user_ids: list[UserId] | None = Field(
        default=None, min_length=1, description="required unless all is true"
    )
    all: bool = False


class Disconnect(_Body):
    """``POST /api/v1/ws/notifications/disconnect``."""

    user_id: UserId


QueryTypes = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]],
    BeforeValidator(_query_list),
    Field(max_length=256),
]
QueryPriorities = Annotated[list[PriorityName], BeforeValidator(_query_list)]


class ListQuery(BaseModel):
    """``GET /api/v1/notifications`` query. Every filter narrows the list; the default
    lists every notification that is not archived (muted types included)."""

    unread_only: QueryBool = False
    limit: int | None = Field(default=None, ge=1, description="default 50; above 200 means 200")
    before_id: int | None = Field(default=None, ge=1, le=INT64_MAX, description="next page")
    type: QueryTypes | None = Field(
        default=None, description="only these types: comma-separated, or the key repeated"
    )
    read: QueryBool | None = Field(default=None, description="only read (true) or unread (false)")
    seen: QueryBool | None = Field(default=None, description="only seen (true) or unseen (false)")
    archived: QueryBool = Field(
        default=False, description="true: only archived ones; false (default): only the others"
    )
    priority: QueryPriorities | None = Field(
        default=None, description="only these priorities: comma-separated, or the key repeated"
    )
    created_after: Instant | None = Field(default=None, description="strictly after")
    created_before: Instant | None = Field(default=None, description="strictly before")


UpToId = Annotated[
    int,
    Field(ge=0, le=INT64_MAX, description="the last id to include; absent or 0: the newest"),
]


class MarkSeen(_Body):
    """``POST /api/v1/notifications/seen`` (the body may be left out)."""

    up_to_id: UpToId | None = None


class MarkAllRead(_Body):
    """``POST /api/v1/notifications/read_all`` (the body may be left out)."""

    notification_type: NotificationType | None = Field(
        default=None, description="only this type; absent or null: every type"
    )
    up_to_id: UpToId | None = None


MUTED_TYPES_MAX = 256


class Preferences(_Body):
    """The caller's preferences: the muted types (sorted and unique in answers)."""

    muted_types: list[NotificationType] = Field(
        max_length=MUTED_TYPES_MAX,
        description="at most 256 types of 1–64 characters; replaces the stored set. A muted "
        "type is stored and listed but not pushed, replayed or counted in the totals",
    )


class StatusQuery(BaseModel):
    """``GET /api/v1/ws/notifications/status`` query (``user_id``: admins only)."""

    user_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


# --- answers (documentation only) -------------------------------------------------------


class Notification(BaseModel):
    """A notification (docs/PROTOCOL.md §3)."""

    id: int
    user_id: str
    type: str
    title: str
    message: str
    data: dict[str, Any]
    priority: PriorityName
    created_at: str = Field(
        description="ISO-8601 UTC with milliseconds, e.g. 2026-11-25T22:52:07.123Z"
    )
    read: bool
    read_at: str | None
    seen: bool = Field(description="the user marked the list seen up to this one")
    seen_at: str | None
    archived: bool
    archived_at: str | None
    expires_at: str | None = Field(description="null: it never expires")
    ignore_mutes: bool = Field(description="delivered even when its type is muted")


class NotificationPage(BaseModel):
    notifications: list[Notification]
    has_more: bool


class UnreadCount(BaseModel):
    unread: int


class SeenMarked(BaseModel):
    """The id the mark went up to, and how many notifications became seen."""

    up_to_id: int
    seen: int


class ReadAllMarked(BaseModel):
    """The id the mark went up to, and how many notifications became read."""

    up_to_id: int
    read: int


class TypeCounts(BaseModel):
    unread: int
    unseen: int


class Counts(BaseModel):
    """Not archived, not expired. The totals leave out muted types (unless a notification
    was sent with ``ignore_mutes``); ``by_type`` lists every type with a nonzero figure,
    muted ones included."""

    unread: int
    unseen: int
    by_type: dict[str, TypeCounts]


class CreatedBatch(BaseModel):
    """The answer to a batch create, in request order: 201, with ``Idempotent-Replayed:
    true`` when every item was a replay."""

    notifications: list[Notification] = Field(description="one per item, in request order")
    created: list[bool] = Field(
        description="parallel to notifications: false where an idempotency key matched"
    )


class BroadcastCreated(BaseModel):
    """The answer to a broadcast: how many notifications (one per recipient) were created."""

    created: int


class NodeStats(BaseModel):
    node_id: str
    total_connections: int
    unique_users: int
    messages_sent: int
    dropped: int
    uptime_s: float


class ClusterStats(BaseModel):
    """Who is connected across the cluster, counted together with ``nodes``."""

    total_connections: int = Field(description="Live sessions on every node (sum of nodes).")
    unique_users: int = Field(description="Distinct users with a session on any node.")
    nodes: int = Field(description="How many nodes are counted, the answering one included.")


class Stats(BaseModel):
    total_connections: int
    unique_users: int
    messages_sent: int
    queued: int
    dropped: int
    uptime_s: float
    node_id: str
    nodes: list[NodeStats]
    cluster: ClusterStats


class ConnectionStatus(BaseModel):
    user_id: str
    connected: bool
    connection_count: int


class Disconnected(BaseModel):
    disconnected: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class Error(BaseModel):
    """Every error answer: ``field`` names the field at fault, when one is."""

    error: ErrorDetail
