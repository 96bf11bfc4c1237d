"""Logic shared by the SQL stores: how a batch of creates maps onto new and existing rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.engine.models import Created, NewNotification, Notification

#: For each item: the existing notification it repeats, or the index of its new row.
Plan = list[tuple[Notification | int, bool]]


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
