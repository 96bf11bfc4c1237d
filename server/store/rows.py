"""What both SQL stores share about rows: the columns a notification is read from, how
such a row becomes a ``Notification``, which ids can exist, and how a batch of creates
maps onto new and existing rows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from server.engine.models import Created, NewNotification, Notification, Priority

T = TypeVar("T")

#: The columns of a notification, in the order ``notification`` reads them.
COLUMNS = "id, user_id, type, title, message, data_json, priority, created_at, read_at"
#: The columns ``INSERT`` fills, in order (every new row is queued).
INSERT_COLUMNS = (
    "user_id, type, title, message, data_json, priority, created_at, queued, idempotency_key"
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
    )


def new_rows(
    ids: Sequence[int], items: Sequence[NewNotification], now: datetime
) -> list[Notification]:
    """The notifications just inserted for ``items`` with these ``ids`` (in item order)."""
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
        )
        for new_id, i in zip(ids, items, strict=True)
    ]


def valid_id(notification_id: int) -> bool:
    """Whether a row could have this id (the driver would raise on one no column holds)."""
    return 0 < notification_id <= MAX_ID


def valid_ids(ids: Collection[int]) -> list[int]:
    """The ids that could exist, ascending, once each."""
    return sorted({i for i in ids if valid_id(i)})


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
    return [Created(rows[ref] if isinstance(ref, int) else ref, new) for ref, new in plan]
