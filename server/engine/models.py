"""Notifications and the requests that create them, with the validation rules of PROTOCOL.md §3.

``data`` is carried as JSON text end to end: the engine checks once, on create, that it
is a JSON object, and never parses it again. Every transport can then hand it on as
it came (numbers and nesting intact) without a decode/encode per delivery. Because
it is handed on unparsed, it must be JSON every reader accepts (``JSON.parse``
included): ``NaN``, ``Infinity`` and numbers beyond the double range are refused,
as are unpaired UTF-16 surrogates and nesting deeper than ``DATA_DEPTH_MAX``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, NoReturn

from server.engine.errors import InvalidArgument

USER_ID_MAX = 128
TYPE_MAX = 64
TITLE_MAX = 200
MESSAGE_MAX = 4000
IDEMPOTENCY_KEY_MAX = 255
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
#: How deeply ``data`` may nest objects and arrays (``{}`` is 1, ``{"a": []}`` is 2).
DATA_DEPTH_MAX = 64
BATCH_MAX = 1000
BATCH_FIELD = "notifications"
#: How many types a user may mute (``Preferences.muted_types``).
MUTED_TYPES_MAX = 256
#: How many types a list filter may name (``InboxQuery.types``).
QUERY_TYPES_MAX = 256


class Priority(StrEnum):
    """How urgent a notification is."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Notification(NamedTuple):
    """One notification of one user, as committed to the store.

    A named tuple rather than a frozen dataclass: one is built per recipient of every
    broadcast, and a tuple is built much faster (docs/BENCHMARKS.md, "Small costs").
    """

    id: int
    user_id: str
    type: str
    title: str
    message: str
    data_json: str
    priority: Priority
    created_at: datetime
    read_at: datetime | None = None
    seen_at: datetime | None = None
    archived_at: datetime | None = None
    expires_at: datetime | None = None
    ignore_mutes: bool = False

    @property
    def read(self) -> bool:
        return self.read_at is not None

    @property
    def seen(self) -> bool:
        return self.seen_at is not None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def expired(self, now: datetime) -> bool:
        """Whether the notification has expired at ``now`` (``expires_at <= now``)."""
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Content:
    """What a notification says, independent of its recipient. Validated on construction."""

    type: str
    title: str
    message: str = ""
    data_json: str = "{}"
    priority: Priority = Priority.NORMAL
    #: When it expires (aware; the engine refuses a moment not later than its clock's
    #: now): from then on it is neither delivered nor listed.
    expires_at: datetime | None = None
    #: Delivered and counted even when its type is muted (e.g. security alerts).
    ignore_mutes: bool = False

    def __post_init__(self) -> None:
        check_text("type", self.type, TYPE_MAX, required=True)
        check_text("title", self.title, TITLE_MAX, required=True)
        check_text("message", self.message, MESSAGE_MAX, required=False)
        if not isinstance(self.priority, Priority):
            raise InvalidArgument("priority", "must be one of low, normal, high, urgent")
        object.__setattr__(self, "data_json", normalise_data(self.data_json))
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", check_aware("expires_at", self.expires_at))
        if not isinstance(self.ignore_mutes, bool):
            raise InvalidArgument("ignore_mutes", "must be a boolean")


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A request to create one notification for one user. Validated on construction;
    ``user_id_checked=True`` says the caller has checked ``user_id`` already (a broadcast
    checks its recipient list as a whole)."""

    user_id: str
    content: Content
    idempotency_key: str | None = None
    user_id_checked: InitVar[bool] = False
    #: When it expires; ``None`` takes ``content.expires_at``.
    expires_at: datetime | None = None
    #: Delivered even when its type is muted; ``content.ignore_mutes`` also counts.
    ignore_mutes: bool = False

    def __post_init__(self, user_id_checked: bool) -> None:
        if not user_id_checked:
            check_user_id(self.user_id)
        if self.idempotency_key is not None:
            check_text("idempotency_key", self.idempotency_key, IDEMPOTENCY_KEY_MAX, required=True)
        # After this, ``expires_at`` and ``ignore_mutes`` are the ones that apply.
        if self.expires_at is None:
            if self.content.expires_at is not None:
                object.__setattr__(self, "expires_at", self.content.expires_at)
        else:
            object.__setattr__(self, "expires_at", check_aware("expires_at", self.expires_at))
        if not isinstance(self.ignore_mutes, bool):
            raise InvalidArgument("ignore_mutes", "must be a boolean")
        if self.content.ignore_mutes and not self.ignore_mutes:
            object.__setattr__(self, "ignore_mutes", True)

    @classmethod
    def for_recipients(cls, user_ids: Sequence[str], content: Content) -> list[NewNotification]:
        """``[cls(u, content, user_id_checked=True) for u in user_ids]`` (the caller checked
        the ids), validated once rather than per recipient: a broadcast makes one each."""
        if not user_ids:
            return []
        first = cls(user_ids[0], content, user_id_checked=True)
        # Every other field as the first one's, set through the slots (no __init__ again).
        slots = vars(cls)
        set_user = slots["user_id"].__set__
        others = [
            (slots[f.name].__set__, getattr(first, f.name))
            for f in fields(cls)
            if f.name != "user_id"
        ]
        make = object.__new__
        items = [first]
        for user_id in user_ids[1:]:
            item = make(cls)
            set_user(item, user_id)
            for set_field, value in others:
                set_field(item, value)
            items.append(item)
        return items


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """Which of a user's notifications a list call returns (newest first). Validated on
    construction; an ``InvalidArgument`` names the REST query field at fault.

    ``unread_only`` is the older spelling of ``read=False``; ``archived`` picks the
    archived ones (True) or the others (False); ``types``/``priorities`` empty means any;
    ``created_after``/``created_before`` are strict bounds; ``before_id`` is the cursor.
    ``limit`` is clamped to ``LIST_LIMIT_MAX``.
    """

    unread_only: bool = False
    read: bool | None = None
    seen: bool | None = None
    archived: bool = False
    types: tuple[str, ...] = ()
    priorities: tuple[Priority, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = LIST_LIMIT_DEFAULT
    before_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("unread_only", "archived"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(name, "must be a boolean")
        for name in ("read", "seen"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidArgument(name, "must be a boolean")
        if self.unread_only and self.read is True:
            raise InvalidArgument("read", "contradicts unread_only")
        types = check_types("type", self.types)
        if len(types) > QUERY_TYPES_MAX:
            raise InvalidArgument("type", f"at most {QUERY_TYPES_MAX} types")
        object.__setattr__(self, "types", tuple(sorted(set(types))))
        if not isinstance(self.priorities, list | tuple):
            raise InvalidArgument("priority", "must be a list of low, normal, high, urgent")
        priorities: set[Priority] = set()
        for p in self.priorities:
            try:
                priorities.add(Priority(p))
            except ValueError:
                raise InvalidArgument(
                    "priority", "must be a list of low, normal, high, urgent"
                ) from None
        object.__setattr__(self, "priorities", tuple(sorted(priorities)))
        for name in ("created_after", "created_before"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_aware(name, value))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise InvalidArgument("limit", "must be an integer")
        object.__setattr__(self, "limit", clamp_limit(self.limit))
        if self.before_id is not None and (
            isinstance(self.before_id, bool)
            or not isinstance(self.before_id, int)
            or self.before_id < 1
        ):
            raise InvalidArgument("before_id", "must be a positive integer")

    @property
    def read_filter(self) -> bool | None:
        """``read`` with ``unread_only`` folded in: None (any), True or False."""
        return False if self.unread_only else self.read

    def matches(self, n: Notification) -> bool:
        """Whether ``n`` (a row of the user, not expired) is selected, cursor included."""
        read = self.read_filter
        return (
            (read is None or n.read == read)
            and (self.seen is None or n.seen == self.seen)
            and n.archived == self.archived
            and (not self.types or n.type in self.types)
            and (not self.priorities or n.priority in self.priorities)
            and (self.created_after is None or n.created_at > self.created_after)
            and (self.created_before is None or n.created_at < self.created_before)
            and (self.before_id is None or n.id < self.before_id)
        )


@dataclass(frozen=True, slots=True)
class TypeCounts:
    """Unread and unseen notifications of one type."""

    unread: int
    unseen: int


@dataclass(frozen=True, slots=True)
class Counts:
    """A user's badge figures: not archived, not expired. The totals leave out muted types
    (unless the row ignores mutes); ``by_type`` has every type with a nonzero figure."""

    unread: int
    unseen: int
    by_type: dict[str, TypeCounts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Preferences:
    """A user's durable preferences: the muted types, sorted and unique (at most 256,
    each 1–64 characters; ``InvalidArgument`` on ``muted_types`` otherwise)."""

    muted_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        types = check_types("muted_types", self.muted_types)
        unique = tuple(sorted(set(types)))
        if len(unique) > MUTED_TYPES_MAX:
            raise InvalidArgument("muted_types", f"at most {MUTED_TYPES_MAX} types")
        object.__setattr__(self, "muted_types", unique)


@dataclass(frozen=True, slots=True)
class SeenMark:
    """The outcome of a mark seen: the id it went up to, and how many rows changed."""

    up_to_id: int
    changed: int


@dataclass(frozen=True, slots=True)
class ReadAllMark:
    """The outcome of a mark all read: the id it went up to, and how many rows changed."""

    up_to_id: int
    changed: int


class Created(NamedTuple):
    """The outcome of a create: the notification, and whether this call made it.

    A named tuple, like ``Notification``: one is made per recipient of every broadcast.
    """

    notification: Notification
    created: bool = True


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of an inbox, newest first."""

    notifications: Sequence[Notification]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Replay:
    """What a connecting session is owed: ascending, and whether older ones were skipped;
    with the user's muted types as read for it (their rows are left out)."""

    notifications: Sequence[Notification]
    truncated: bool
    muted_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One node's live figures."""

    node_id: str
    total_connections: int
    unique_users: int
    messages_sent: int
    dropped: int
    uptime_s: float


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """Who is connected across the cluster: the sum of the ``nodes`` entries of ``Stats``."""

    total_connections: int = 0
    unique_users: int = 0
    nodes: int = 1


@dataclass(frozen=True, slots=True)
class Stats:
    """Connection and delivery figures: this node's and the cluster's, taken together.

    ``total_connections`` and ``unique_users`` are cluster-wide (as in ``cluster``);
    ``nodes`` starts with the answering node's live figures.
    """

    node_id: str
    total_connections: int
    unique_users: int
    messages_sent: int
    queued: int
    dropped: int
    uptime_s: float
    nodes: Sequence[NodeStats] = field(default_factory=tuple)
    cluster: ClusterStats = field(default_factory=ClusterStats)


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """Whether a user has live sessions, anywhere in the cluster."""

    user_id: str
    connection_count: int

    @property
    def connected(self) -> bool:
        return self.connection_count > 0


def check_user_id(user_id: object, field_name: str = "user_id") -> str:
    """``user_id`` if it is a valid user id (1–128 characters), else ``InvalidArgument``."""
    return check_text(field_name, user_id, USER_ID_MAX, required=True)


def check_text(field_name: str, value: object, max_len: int, *, required: bool) -> str:
    """``value`` if it is a string within bounds, else ``InvalidArgument`` naming the field."""
    if not isinstance(value, str):
        raise InvalidArgument(field_name, "must be a string")
    if required and not value:
        raise InvalidArgument(field_name, "is required")
    if len(value) > max_len:
        raise InvalidArgument(field_name, f"must be at most {max_len} characters")
    if "\x00" in value:
        raise InvalidArgument(field_name, "must not contain NUL characters")
    return value


def check_aware(field_name: str, value: object) -> datetime:
    """``value`` if it is a datetime with a zone (as UTC), else ``InvalidArgument``."""
    if not isinstance(value, datetime):
        raise InvalidArgument(field_name, "must be a timestamp")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(field_name, "must be a timestamp with a time zone")
    return value.astimezone(UTC)


def check_expires_at(value: datetime | None, now: datetime) -> None:
    """``InvalidArgument`` on ``expires_at`` unless it is None or later than ``now``."""
    if value is not None and value <= now:
        raise InvalidArgument("expires_at", "must be later than now")


def check_types(field_name: str, types: object) -> tuple[str, ...]:
    """A list of notification types, each 1–64 characters, else ``InvalidArgument``."""
    if not isinstance(types, list | tuple):
        raise InvalidArgument(field_name, "must be a list of strings")
    return tuple(check_text(field_name, t, TYPE_MAX, required=True) for t in types)


def normalise_data(data_json: str) -> str:
    """Compact JSON text of a JSON object; ``""`` means ``{}``.

    Refused (``InvalidArgument`` on ``data_json``): text that is not a JSON object, the
    non-standard ``NaN``/``Infinity``, numbers a double cannot hold, unpaired
    surrogates, and nesting deeper than ``DATA_DEPTH_MAX``.
    """
    if not data_json or data_json == "{}":  # most creates carry no data: nothing to parse
        return "{}"
    try:
        value: Any = json.loads(data_json)
    except RecursionError:
        _too_deep()
    except ValueError as exc:
        raise InvalidArgument("data_json", "must be a JSON object") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("data_json", "must be a JSON object")
    # Only text with that many brackets can nest that deep: most data skips the walk.
    if data_json.count("[") + data_json.count("{") > DATA_DEPTH_MAX and (
        json_depth(value, DATA_DEPTH_MAX) > DATA_DEPTH_MAX
    ):
        _too_deep()
    try:
        # allow_nan=False: NaN, Infinity and numbers beyond a double (read as infinity).
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise InvalidArgument(
            "data_json", "NaN, Infinity and numbers beyond a double are not JSON numbers"
        ) from None
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(
            "data_json", "strings must be valid Unicode (unpaired surrogate)"
        ) from None
    return text


def json_depth(value: object, stop_after: int) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is 0, ``{}`` is 1).

    Counting stops once it passes ``stop_after``: the answer is then ``stop_after + 1``.
    Iterative, so no nesting can exhaust the stack.
    """
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    pending: list[tuple[dict[Any, Any] | list[Any], int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if level > stop_after:
            return level
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item
        pending.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def _too_deep() -> NoReturn:
    raise InvalidArgument("data_json", f"must nest at most {DATA_DEPTH_MAX} levels deep") from None


def check_batch_size(count: int) -> int:
    """``count`` if a batch create may hold that many items (1–1000), else ``InvalidArgument``."""
    if count < 1:
        raise InvalidArgument(BATCH_FIELD, "give at least one notification")
    if count > BATCH_MAX:
        raise InvalidArgument(BATCH_FIELD, f"at most {BATCH_MAX} notifications per batch")
    return count


@contextmanager
def batch_item(index: int) -> Iterator[None]:
    """Blame an ``InvalidArgument`` raised inside on item ``index`` of a batch create: its
    field becomes ``notifications[3].title``, so the caller knows which item to fix."""
    try:
        yield
    except InvalidArgument as exc:
        raise InvalidArgument(f"{BATCH_FIELD}[{index}].{exc.field}", exc.reason) from None


def clamp_limit(limit: int | None) -> int:
    """The page size of a list call: default 50, at most 200, below 1 is an error."""
    if limit is None:
        return LIST_LIMIT_DEFAULT
    if limit < 1:
        raise InvalidArgument("limit", "must be at least 1")
    return min(limit, LIST_LIMIT_MAX)
