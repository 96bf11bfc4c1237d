"""An in-memory store: the reference implementation of ``Store``, used by fast tests."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from server.engine.errors import NotFound
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
    TypeCounts,
)
from server.engine.store import CreateResult, Turn
from server.engine.store_health import StoreHealth


class MemoryStore:
    """Everything in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self.health = StoreHealth()
        self._rows: dict[int, Notification] = {}
        self._by_user: dict[str, list[int]] = {}
        self._queued: dict[str, list[int]] = {}
        self._keys: dict[tuple[str, str], int] = {}
        self._dropped_since_connect: dict[str, int] = {}
        self._next_id = 1
        self._preferences: dict[str, Preferences] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

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
        if turn is not None:  # one create at a time: its turn is once the one before is over
            await turn.commit()
        await self.dequeue(delivered)
        outcomes: list[Created] = []
        touched: set[str] = set()
        away: dict[str, bool] = {}
        queued: set[int] = set()
        for item in items:
            self._dropped_since_connect.setdefault(item.user_id, 0)
            key = (item.user_id, item.idempotency_key) if item.idempotency_key else None
            if key is not None and key in self._keys:
                outcomes.append(Created(self._rows[self._keys[key]], created=False))
                continue
            c = item.content
            row = Notification(
                id=self._next_id,
                user_id=item.user_id,
                type=c.type,
                title=c.title,
                message=c.message,
                data_json=c.data_json,
                priority=c.priority,
                created_at=now,
                expires_at=item.expires_at,
                ignore_mutes=item.ignore_mutes,
            )
            self._next_id += 1
            self._rows[row.id] = row
            self._by_user.setdefault(row.user_id, []).append(row.id)
            self._queued.setdefault(row.user_id, []).append(row.id)
            queued.add(row.id)
            if away.setdefault(row.user_id, offline(row.user_id)):
                touched.add(row.user_id)
            if key is not None:
                self._keys[key] = row.id
            outcomes.append(Created(row))
        dropped: dict[str, int] = {}
        for user_id in touched:
            queue = self._queued[user_id]
            if len(queue) > queue_cap:
                excess = len(queue) - queue_cap
                del queue[:excess]
                dropped[user_id] = excess
                self._dropped_since_connect[user_id] += excess
        return CreateResult(outcomes, dropped, frozenset(queued))

    async def replay(
        self,
        user_id: str,
        *,
        since: int | None,
        cap: int,
        type_filter: TypeFilter,
        now: datetime,
    ) -> Replay:
        muted = self._preferences.get(user_id, Preferences()).muted_types
        queue = self._queued.setdefault(user_id, [])
        if since is None:
            owed = list(queue)
            dropped = self._dropped_since_connect.get(user_id, 0) > 0
        else:
            owed = [i for i in self._by_user.get(user_id, ()) if i > since]
            dropped = False
        mute = frozenset(muted)
        admitted = sorted(
            i
            for i in owed
            if type_filter.admits((row := self._rows[i]).type)
            and not row.expired(now)
            and (row.ignore_mutes or row.type not in mute)
        )
        kept = admitted[-cap:] if cap > 0 else []
        truncated = len(admitted) > len(kept) or dropped
        self._dropped_since_connect[user_id] = 0
        keep = set(kept)
        queue[:] = [i for i in queue if i in keep]
        return Replay([self._rows[i] for i in kept], truncated, muted)

    async def dequeue(self, ids: Collection[int]) -> None:
        for i in ids:
            row = self._rows.get(i)
            if row is not None:
                queue = self._queued.get(row.user_id, [])
                if i in queue:
                    queue.remove(i)

    async def requeue(self, ids: Collection[int]) -> None:
        for i in sorted(set(ids)):
            row = self._rows.get(i)
            if row is not None:
                queue = self._queued.setdefault(row.user_id, [])
                if i not in queue:
                    insort(queue, i)

    async def fetch(self, ids: Collection[int]) -> list[Notification]:
        return [self._rows[i] for i in sorted(set(ids)) if i in self._rows]

    async def fetch_range(
        self, after_id: int, upto_id: int, limit: int
    ) -> list[tuple[Notification, bool]]:
        if limit <= 0:
            return []
        ids = list(self._rows)  # insertion order is id order
        found: list[tuple[Notification, bool]] = []
        for i in ids[bisect_right(ids, after_id) :]:
            if i > upto_id or len(found) == limit:
                break
            row = self._rows[i]
            found.append((row, i in self._queued.get(row.user_id, ())))
        return found

    async def last_id(self) -> int:
        return self._next_id - 1

    async def inbox(self, user_id: str, query: InboxQuery, *, now: datetime) -> Page:
        limit = max(query.limit, 0)
        picked: list[Notification] = []
        for i in reversed(self._by_user.get(user_id, ())):
            row = self._rows[i]
            if row.expired(now) or not query.matches(row):
                continue
            picked.append(row)
            if len(picked) > limit:
                break
        return Page(picked[:limit], has_more=len(picked) > limit)

    async def counts(self, user_id: str, *, now: datetime) -> Counts:
        muted = frozenset(self._preferences.get(user_id, Preferences()).muted_types)
        unread = unseen = 0
        by_type: dict[str, tuple[int, int]] = {}
        for i in self._by_user.get(user_id, ()):
            row = self._rows[i]
            if row.archived or row.expired(now) or (row.read and row.seen):
                continue
            u, s = int(not row.read), int(not row.seen)
            old = by_type.get(row.type, (0, 0))
            by_type[row.type] = (old[0] + u, old[1] + s)
            if row.ignore_mutes or row.type not in muted:
                unread += u
                unseen += s
        figures = {t: TypeCounts(u, s) for t, (u, s) in sorted(by_type.items())}
        return Counts(unread, unseen, figures)

    async def mark_read(self, user_id: str, notification_id: int, now: datetime) -> Notification:
        row = self._mine(user_id, notification_id)
        if row.read_at is None:
            row = row._replace(read_at=now)
            self._rows[notification_id] = row
        return row

    async def mark_seen(self, user_id: str, up_to_id: int | None, now: datetime) -> tuple[int, int]:
        mine = self._by_user.get(user_id, [])
        upto = up_to_id if up_to_id is not None else (mine[-1] if mine else 0)
        changed = 0
        for i in mine:
            row = self._rows[i]
            if i <= upto and row.seen_at is None and not row.expired(now):
                self._rows[i] = row._replace(seen_at=now)
                changed += 1
        return upto, changed

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None, now: datetime
    ) -> tuple[int, int]:
        mine = self._by_user.get(user_id, [])
        upto = up_to_id if up_to_id is not None else (mine[-1] if mine else 0)
        changed = 0
        for i in mine:
            row = self._rows[i]
            if (
                i <= upto
                and row.read_at is None
                and not row.expired(now)
                and (notification_type is None or row.type == notification_type)
            ):
                self._rows[i] = row._replace(read_at=now)
                changed += 1
        return upto, changed

    async def set_archived(
        self, user_id: str, notification_id: int, archived: bool, now: datetime
    ) -> Notification:
        row = self._mine(user_id, notification_id)
        if archived != row.archived:
            row = row._replace(archived_at=now if archived else None)
            self._rows[notification_id] = row
        return row

    async def delete(self, user_id: str, notification_id: int) -> None:
        self._mine(user_id, notification_id)
        self._remove([notification_id])

    async def delete_expired(self, now: datetime, limit: int) -> int:
        expired = [i for i, row in self._rows.items() if row.expired(now)][: max(limit, 0)]
        self._remove(expired)
        return len(expired)

    async def preferences(self, user_id: str) -> Preferences:
        return self._preferences.get(user_id, Preferences())

    async def set_preferences(self, user_id: str, preferences: Preferences) -> None:
        self._preferences[user_id] = preferences

    def _mine(self, user_id: str, notification_id: int) -> Notification:
        row = self._rows.get(notification_id)
        if row is None or row.user_id != user_id:
            raise NotFound(f"notification {notification_id} not found")
        return row

    def _remove(self, ids: Collection[int]) -> None:
        gone = set(ids)
        if gone:  # a deleted row's key may be used again, as on SQL
            self._keys = {k: v for k, v in self._keys.items() if v not in gone}
        for i in ids:
            row = self._rows.pop(i)
            self._by_user[row.user_id].remove(i)
            queue = self._queued.get(row.user_id, [])
            if i in queue:
                queue.remove(i)

    async def known_users(self) -> list[str]:
        return sorted(self._dropped_since_connect)

    async def queued_count(self) -> int:
        return sum(len(q) for q in self._queued.values())
