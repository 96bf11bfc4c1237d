"""What both SQL stores share about rows: the columns a notification is read from, how
such a row becomes a ``Notification``, which ids can exist, and how a batch of creates
maps onto new and existing rows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from server.engine.models import (
    Counts,
    Created,
    InboxQuery,
    NewNotification,
    Notification,
    Priority,
    TypeCounts,
)

T = TypeVar("T")

#: Where a notification is read from: its row, and the content it shares, if any
#: (``tables``: the key's name is ``content_id`` on both sides, nothing else repeats).
SOURCE = "notifications LEFT JOIN contents USING (content_id)"


def columns(table: str) -> str:
    """The columns of a notification read from ``table`` joined to ``contents`` (as in
    ``SOURCE``), in the order ``notification`` reads them: the row's own title, message
    and data, or its content's."""
    shared = ", ".join(
        f"coalesce({table}.{name}, contents.{name})" for name in ("title", "message", "data_json")
    )
    return (
        f"id, user_id, type, {shared}, priority, created_at, read_at, "
        "seen_at, archived_at, expires_at, ignore_mutes"
    )


#: The columns of a notification read from ``SOURCE``.
COLUMNS = columns("notifications")


def paged(rows: str, order: str, extra: str = "") -> str:
    """The notifications ``rows`` selects (``SELECT * FROM notifications …`` with its own
    ``ORDER BY`` and ``LIMIT``), each joined to its content afterwards, in ``order``:
    ``COLUMNS`` and then ``extra`` columns.

    The join comes after the limit so that the plan of ``rows`` stays that of one table:
    PostgreSQL, not knowing yet how few rows a fresh broadcast joins, would otherwise
    join the whole range and sort it before taking the first page.
    """
    return (
        f"SELECT {COLUMNS}{extra} FROM ({rows}) AS notifications "
        f"LEFT JOIN contents USING (content_id) ORDER BY {order}"
    )


#: How many columns ``COLUMNS`` names: a query's extra columns follow at this index.
NCOLUMNS = 13
#: The columns ``INSERT`` fills, in order (every new row is queued).
INSERT_COLUMNS = (
    "user_id, type, title, message, data_json, priority, created_at, queued, idempotency_key, "
    "expires_at, ignore_mutes"
)
#: The columns a recipient's row of a shared content fills, in order.
SHARED_COLUMNS = (
    "user_id, type, priority, created_at, queued, idempotency_key, expires_at, ignore_mutes, "
    "content_id"
)
#: Contents no row points at any more, among some just unlinked (the parameter); an
#: index probe each (``ix_notifications_content_id``).
ORPHANS = (
    "content_id IN ({ids}) AND NOT EXISTS (SELECT 1 FROM notifications "
    "WHERE notifications.content_id = contents.content_id)"
)

#: The largest id a column can hold: a larger one simply does not exist.
MAX_ID = 2**63 - 1


class Record(Protocol):
    """A row as the drivers return it: its columns by position."""

    def __getitem__(self, index: int, /) -> Any: ...


#: For each item: the existing notification it repeats, or the index of its new row.
Plan = list[tuple[Notification | int, bool]]


def notification(row: Record, moment: Callable[[Any], datetime | None]) -> Notification:
    """A ``COLUMNS`` row as the domain value; ``moment`` reads a stored timestamp."""
    created = moment(row[7])
    assert created is not None
    return Notification(
        id=row[0],
        user_id=row[1],
        type=row[2],
        title=row[3],
        message=row[4],
        data_json=row[5],
        priority=Priority(row[6]),
        created_at=created,
        read_at=moment(row[8]),
        seen_at=moment(row[9]),
        archived_at=moment(row[10]),
        expires_at=moment(row[11]),
        ignore_mutes=bool(row[12]),
    )


def new_rows(
    ids: Sequence[int], items: Sequence[NewNotification], now: datetime, *, shared: bool = False
) -> list[Notification]:
    """The notifications just inserted for ``items`` with these ``ids`` (in item order).

    ``shared``: the items differ by recipient only (``same_content``); then every row but
    its first two fields is one tuple, built once (a broadcast makes one row per
    recipient)."""
    if shared and items:
        first = items[0]
        c = first.content
        rest = (c.type, c.title, c.message, c.data_json, c.priority, now, None, None, None,
                first.expires_at, first.ignore_mutes)  # fmt: skip
        make = tuple.__new__  # what ``Notification(...)`` does, without its Python ``__new__``
        return [
            make(Notification, (new_id, i.user_id, *rest))
            for new_id, i in zip(ids, items, strict=True)
        ]
    return [
        Notification(
            new_id,
            i.user_id,
            i.content.type,
            i.content.title,
            i.content.message,
            i.content.data_json,
            i.content.priority,
            now,
            expires_at=i.expires_at,
            ignore_mutes=i.ignore_mutes,
        )
        for new_id, i in zip(ids, items, strict=True)
    ]


def same_content(items: Sequence[NewNotification]) -> bool:
    """Whether the items differ by recipient only (a broadcast): one content, no keys.

    Such items share one ``contents`` row when there are two or more of them."""
    first = items[0]
    return all(_alike(i, first) for i in items)


def _alike(item: NewNotification, first: NewNotification) -> bool:
    """Whether ``item`` is ``first`` for another recipient: the same content, neither
    expiry nor mutes apart, and no idempotency key."""
    return (
        item.content is first.content
        and item.idempotency_key is None
        and item.expires_at == first.expires_at
        and item.ignore_mutes == first.ignore_mutes
    )


def content_runs(items: Sequence[NewNotification]) -> list[tuple[int, int, bool]]:
    """``items`` cut into runs, in order: ``(start, end, shared)``, ``shared`` for two or
    more consecutive items that differ by recipient only (``same_content``: a broadcast's
    slice), the items between such runs together, not shared.

    The writer groups concurrent creates into one transaction: several broadcasts in
    flight arrive as one batch whose slices each still share one ``contents`` row."""
    count = len(items)
    if count > 1 and same_content(items):  # one broadcast's slice: the usual batch
        return [(0, count, True)]
    found: list[tuple[int, int, bool]] = []
    start = 0
    while start < count:
        first = items[start]
        end = start + 1
        if first.idempotency_key is None:
            while end < count and _alike(items[end], first):
                end += 1
        if end - start > 1:
            found.append((start, end, True))
        elif found and not found[-1][2]:  # the items of no shared run stay together
            found[-1] = (found[-1][0], end, False)
        else:
            found.append((start, end, False))
        start = end
    return found


#: Not expired at the parameter that follows (both dialects).
LIVE = "(expires_at IS NULL OR expires_at > {now})"


def inbox_where(query: InboxQuery, now: object, param: Callable[[object], str]) -> str:
    """The conditions of ``query`` (after ``user_id``) in SQL; ``param(value)`` adds a
    parameter and returns its placeholder."""
    where = [LIVE.format(now=param(now))]
    read = query.read_filter
    if read is not None:
        where.append("read_at IS NOT NULL" if read else "read_at IS NULL")
    if query.seen is not None:
        where.append("seen_at IS NOT NULL" if query.seen else "seen_at IS NULL")
    where.append("archived_at IS NOT NULL" if query.archived else "archived_at IS NULL")
    if query.types:
        where.append(f"type IN ({', '.join(param(t) for t in query.types)})")
    if query.priorities:
        where.append(f"priority IN ({', '.join(param(p.value) for p in query.priorities)})")
    if query.created_after is not None:
        where.append(f"created_at > {param(query.created_after)}")
    if query.created_before is not None:
        where.append(f"created_at < {param(query.created_before)}")
    if query.before_id is not None:
        where.append(f"id < {param(min(query.before_id, MAX_ID))}")
    return " AND ".join(where)


#: Per (type, ignore_mutes): unread and unseen rows not archived nor expired at ``{now}``.
COUNTS = (
    "SELECT type, ignore_mutes, "
    "sum(CASE WHEN read_at IS NULL THEN 1 ELSE 0 END), "
    "sum(CASE WHEN seen_at IS NULL THEN 1 ELSE 0 END) "
    "FROM notifications WHERE user_id = {user} AND archived_at IS NULL "
    f"AND (read_at IS NULL OR seen_at IS NULL) AND {LIVE} "
    "GROUP BY type, ignore_mutes"
)


def counts(groups: Iterable[Record], muted: Collection[str]) -> Counts:
    """``Counts`` from the rows of ``COUNTS``."""
    unread = unseen = 0
    by_type: dict[str, list[int]] = {}
    for group in groups:
        type_, ignore_mutes = group[0], group[1]
        n_unread, n_unseen = int(group[2] or 0), int(group[3] or 0)
        figures = by_type.setdefault(type_, [0, 0])
        figures[0] += n_unread
        figures[1] += n_unseen
        if ignore_mutes or type_ not in muted:
            unread += n_unread
            unseen += n_unseen
    return Counts(
        unread,
        unseen,
        {t: TypeCounts(u, s) for t, (u, s) in sorted(by_type.items()) if u or s},
    )


def valid_id(notification_id: int) -> bool:
    """Whether a row could have this id (the driver would raise on one no column holds)."""
    return 0 < notification_id <= MAX_ID


def valid_ids(ids: Collection[int]) -> list[int]:
    """The ids that could exist, ascending, once each."""
    return sorted({i for i in ids if valid_id(i)})


#: The shortest run of consecutive ids that ``runs`` gives as a range.
RUN_MIN = 4


def runs(ids: Iterable[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """``ids`` as ranges (first, last) of at least ``RUN_MIN`` consecutive ids, and the
    ids in none. A broadcast's rows have consecutive ids: their queue marks are a few
    ranges, each updated through the primary key without a parameter per row."""
    ranges: list[tuple[int, int]] = []
    single: list[int] = []
    ordered = sorted(set(ids))
    start = 0
    for end in range(1, len(ordered) + 1):
        if end == len(ordered) or ordered[end] != ordered[end - 1] + 1:
            if end - start >= RUN_MIN:
                ranges.append((ordered[start], ordered[end - 1]))
            else:
                single += ordered[start:end]
            start = end
    return ranges, single


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def idempotency_key(item: NewNotification) -> tuple[str, str] | None:
    return None if item.idempotency_key is None else (item.user_id, item.idempotency_key)


def plan_creates(
    items: Sequence[NewNotification], existing: Mapping[tuple[str, str], Notification]
) -> tuple[list[NewNotification], Plan]:
    """The items to insert, and the plan: an item whose idempotency key matches an
    ``existing`` row, or an earlier item of the batch, inserts nothing."""
    fresh: list[NewNotification] = []
    plan: Plan = []
    first: dict[tuple[str, str], int] = {}
    for item in items:
        key = idempotency_key(item)
        if key is not None and key in existing:
            plan.append((existing[key], False))
        elif key is not None and key in first:
            plan.append((first[key], False))
        else:
            if key is not None:
                first[key] = len(fresh)
            plan.append((len(fresh), True))
            fresh.append(item)
    return fresh, plan


def outcomes(plan: Plan, rows: Sequence[Notification]) -> list[Created]:
    """The plan's items as ``Created`` values, given the new rows in order."""
    make = tuple.__new__  # ``Created(...)`` without its Python ``__new__``: one per row
    return [make(Created, (rows[ref] if type(ref) is int else ref, new)) for ref, new in plan]
