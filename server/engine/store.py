"""What the engine needs of its store: the source of truth for notifications, offline
queues and known users. ``server.store`` implements it (memory, SQLite, PostgreSQL).

Rules every implementation keeps:

* ``create`` is atomic and durable: when it returns, every row is committed, ids are
  assigned in the order of ``items``, and ids increase with commit order (a later
  ``create`` on any node gets larger ids), so "everything after id N" never misses a
  row committed before it was asked.
* Every new row starts *queued*, whoever is connected: it stays queued until a live
  session has taken it (``dequeue``, or ``delivered`` in a later ``create``), so no
  view of who is online — stale after a node died, say — can lose it. It also leaves
  the queue when replayed past (``replay`` clears what it does not return) or dropped
  by the per-user cap; it re-enters it with ``requeue`` when a live delivery failed.
* The cap applies to offline users only, after the delivered marks are written: a row
  a session took is never counted as a drop, nor pushes out one nobody took.
* A row of another user is invisible: every per-user call filters on ``user_id``.
* An expired row (``expires_at <= now``) is never replayed, listed or counted;
  ``delete_expired`` removes such rows for good, a bounded batch at a time. ``fetch``
  and ``fetch_range`` return them still: the fan-in follows ids, and a session declines
  what expired (see ``Session.admits``).
* A muted type (``preferences``) is listed, but neither replayed nor in the count
  totals, unless the row has ``ignore_mutes``. Muted rows a replay skips leave the
  queue like any row it does not return. The queue cap counts every queued row,
  muted or expired ones included (simple, and such rows leave at the next replay).
* ``delete`` is a hard delete: the row is gone from every read, queue and resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from server.engine.filters import TypeFilter
from server.engine.models import (
    Counts,
    Created,
    InboxQuery,
    NewNotification,
    Notification,
    Page,
    Preferences,
    Replay,
)
from server.engine.store_health import StoreHealth


@dataclass(frozen=True, slots=True)
class CreateResult:
    """``outcomes`` in the order of the items; ``dropped`` counts queue-cap drops per user;
    ``queued`` holds the ids of the new rows, all inserted queued (the cap may have
    dropped some of them at once)."""

    outcomes: Sequence[Created]
    dropped: dict[str, int] = field(default_factory=dict)
    queued: frozenset[int] = frozenset()


@dataclass(slots=True, eq=False)
class Turn:
    """A create's place in the commit order, so that the create after it can be under way
    meanwhile (``Store.create``'s ``turn``).

    ``began`` is set once the create holds its place (a store's create lock, say), or is
    over; ``over`` ends when it is: with ``None`` committed, with an exception not.
    """

    #: The turn of the create this one follows, if any.
    after: Turn | None = None
    began: asyncio.Event = field(default_factory=asyncio.Event)
    over: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    async def place(self) -> None:
        """Wait until the create before holds its place; raise if it failed already."""
        if self.after is not None:
            await self.after.began.wait()
            if self.after.over.done():
                self.after.over.result()

    async def commit(self) -> None:
        """Wait until the create before is over; raise why, if it was not committed."""
        if self.after is not None:
            await asyncio.shield(self.after.over)

    def ended(self, error: BaseException | None = None) -> None:
        """This create is over: committed, or not for ``error``."""
        self.began.set()
        if not self.over.done():
            if error is None:
                self.over.set_result(None)
            else:
                self.over.set_exception(error)
                self.over.exception()  # nobody need be after it to hear


class Store(Protocol):
    """Persistence of notifications. Implementations: memory (tests), SQLite, PostgreSQL.

    A call that cannot reach the database raises ``StoreUnavailable`` and marks
    ``health`` down; the next call that succeeds marks it up again.
    """

    health: StoreHealth

    async def open(self) -> None:
        """Connect; the schema must already be current (see ``server.store.migrate``)."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...

    async def create(
        self,
        items: Sequence[NewNotification],
        *,
        now: datetime,
        queue_cap: int,
        offline: Callable[[str], bool],
        delivered: Collection[int] = (),
        turn: Turn | None = None,
    ) -> CreateResult:
        """Insert ``items`` in one transaction and register their users.

        First the ``delivered`` rows leave the queue (as ``dequeue``, in the same
        transaction). Every new row is queued; for each user with ``offline(user_id)``
        (asked once per user) the oldest queued rows beyond ``queue_cap`` then leave the
        queue and are counted in ``dropped`` and in the user's dropped-since-connect;
        an online user's rows all stay queued until their sessions take them. An item whose
        ``(user_id, idempotency_key)`` exists already (or repeats an earlier item of the
        same batch) yields the existing notification with ``created=False`` and inserts
        nothing.

        With ``turn`` whose ``after`` is set, the create takes its place in the commit
        order (draws ids) only once ``turn.place()`` returns, and commits only once
        ``turn.commit()`` does, raising its error otherwise, with nothing committed; it
        sets ``turn.began`` once it holds its place, if it can tell (the caller sets it,
        and ``over``, when the call returns). A store that cannot overlap two creates
        waits for ``turn.commit()`` before it begins.
        """
        ...

    async def replay(
        self,
        user_id: str,
        *,
        since: int | None,
        cap: int,
        type_filter: TypeFilter,
        now: datetime,
    ) -> Replay:
        """What a connecting session of ``user_id`` is owed, ascending by id, with the
        user's muted types (``preferences``), read in the same transaction.

        Without ``since``: the user's queued rows. With ``since`` (the client's cursor,
        authoritative): every row with a larger id, queued or not. Either way restricted
        to ``type_filter``, to rows not expired at ``now``, to rows whose type is not one
        of those muted types (unless they ignore mutes), and at most the newest ``cap``;
        ``truncated`` when anything was skipped by that cap or, without ``since``,
        dropped by the queue cap since the user's last connect. Queued rows not returned
        leave the queue; returned ones stay queued until ``dequeue``. Registers the user
        as known and resets its drop count.
        """
        ...

    async def dequeue(self, ids: Collection[int]) -> None:
        """Take these rows out of the offline queue (they were delivered)."""
        ...

    async def requeue(self, ids: Collection[int]) -> None:
        """Put these rows (back) in their users' offline queues: a live delivery failed."""
        ...

    async def fetch(self, ids: Collection[int]) -> list[Notification]:
        """The rows with these ids, ascending (ids that do not exist are skipped)."""
        ...

    async def fetch_range(
        self, after_id: int, upto_id: int, limit: int
    ) -> list[tuple[Notification, bool]]:
        """``(row, queued)`` for ids in ``(after_id, upto_id]``, ascending, the oldest ``limit``."""
        ...

    async def last_id(self) -> int:
        """The largest id committed so far (0 when empty)."""
        ...

    async def inbox(self, user_id: str, query: InboxQuery, *, now: datetime) -> Page:
        """The user's rows ``query`` selects and not expired at ``now``, newest first."""
        ...

    async def counts(self, user_id: str, *, now: datetime) -> Counts:
        """Unread and unseen rows, not archived, not expired at ``now``: per type, and in
        total without the user's muted types (unless the row ignores mutes)."""
        ...

    async def mark_seen(self, user_id: str, up_to_id: int | None, now: datetime) -> tuple[int, int]:
        """``seen_at = now`` on the user's unseen rows with ids up to ``up_to_id`` (None:
        the user's newest): ``(the id used, 0 when the user has none; rows changed)``."""
        ...

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None, now: datetime
    ) -> tuple[int, int]:
        """``read_at = now`` on the user's unread rows (of ``notification_type`` when given,
        archived ones included) with ids up to ``up_to_id`` (None: the user's newest):
        ``(the id used, rows changed)``."""
        ...

    async def set_archived(
        self, user_id: str, notification_id: int, archived: bool, now: datetime
    ) -> Notification:
        """Archive (an archived row keeps its ``archived_at``) or unarchive; ``NotFound``
        as ``mark_read``."""
        ...

    async def delete(self, user_id: str, notification_id: int) -> None:
        """Delete the row for good; ``NotFound`` as ``mark_read``."""
        ...

    async def delete_expired(self, now: datetime, limit: int) -> int:
        """Delete at most ``limit`` rows expired at ``now``; how many. Safe to run on
        several nodes at once."""
        ...

    async def preferences(self, user_id: str) -> Preferences:
        """The user's preferences (none muted when never set)."""
        ...

    async def set_preferences(self, user_id: str, preferences: Preferences) -> None:
        """Replace the user's preferences."""
        ...

    async def mark_read(self, user_id: str, notification_id: int, now: datetime) -> Notification:
        """Mark read (idempotent: an already read row keeps its ``read_at``); ``NotFound``
        when the id does not exist or belongs to another user."""
        ...

    async def known_users(self) -> list[str]:
        """Every user that has connected or received a notification."""
        ...

    async def queued_count(self) -> int:
        """How many rows are in offline queues now, over all users."""
        ...
