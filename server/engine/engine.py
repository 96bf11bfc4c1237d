"""The engine: the composition root of a node, and the one API every transport calls.

It owns the hub (local sessions), the writer (group-committed creates), the delivery
log (queue marks) and the store. Transports hand it validated domain values and get
domain values and ``TidingsError``s back; it knows nothing of gRPC, JSON or HTTP.

Delivery path: ``create`` → writer commits (durable, queued) → fan-out to local
sessions → a session's transport writes it → the delivery log takes it out of the
queue. A row nobody wrote stays queued, whoever looked online when it was committed;
an offline user's queue keeps at most ``max_offline_queue`` (the oldest dropped and
counted) until the next connect replays it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.engine.clock import Clock, SystemClock
from server.engine.delivery import DeliveryLog
from server.engine.errors import InvalidArgument, StoreUnavailable, Unavailable
from server.engine.events import (
    CloseReason,
    Envelope,
    Expiry,
    InboxEvent,
    MarkedRead,
    NotificationArchived,
    NotificationDeleted,
    NotificationsMarkedRead,
    NotificationsSeen,
    NotificationUnarchived,
    PreferencesUpdated,
)
from server.engine.fanin import FanIn
from server.engine.filters import TypeFilter
from server.engine.heartbeat import HeartbeatTimer
from server.engine.hub import Hub
from server.engine.models import (
    TYPE_MAX,
    ClusterStats,
    ConnectionStatus,
    Content,
    Counts,
    Created,
    InboxQuery,
    NewNotification,
    NodeStats,
    Notification,
    Page,
    Preferences,
    ReadAllMark,
    SeenMark,
    Stats,
    batch_item,
    check_batch_size,
    check_expires_at,
    check_text,
    check_types,
    check_user_id,
    clamp_limit,
)
from server.engine.observer import NullObserver, Observer
from server.engine.peers import LoneNode, Peers
from server.engine.session import Session, SessionLimits
from server.engine.writer import Pending, Writer

if TYPE_CHECKING:
    from server.engine.store import CreateResult, Store

log = logging.getLogger(__name__)

#: Seconds between store probes (skipped while other calls are answered).
PROBE_INTERVAL = 0.5
#: A probe that gets no answer within this many seconds marks the store down.
PROBE_TIMEOUT = 2.0
#: At shutdown, how long the store gets to commit pending creates, record queue marks
#: and close. What cannot be written in time is left: those rows stay queued.
STOP_TIMEOUT = 2.0
#: At most this many batches per expiry sweep: the rest waits for the next one.
EXPIRY_SWEEP_BATCHES = 10
#: Recipients per transaction of a broadcast (see ``Engine.broadcast``).
BROADCAST_SLICE = 5000
#: Slices of a broadcast queued beyond the one awaited (see ``Engine.broadcast``).
SLICES_AHEAD = 2


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's knobs (docs/PROTOCOL.md §4, §8)."""

    node_id: str = ""
    max_offline_queue: int = 100
    session: SessionLimits = field(default_factory=SessionLimits)
    delivery_flush_interval: float = 0.05
    #: Seconds between expiry sweeps (each deletes expired rows, a batch at a time).
    expiry_sweep_interval: float = 30.0
    #: Rows per batch of a sweep; a sweep runs at most ``EXPIRY_SWEEP_BATCHES`` batches.
    expiry_sweep_batch: int = 1000
    #: Recipients per transaction of a broadcast: each slice is committed, then delivered,
    #: before the next one is written (docs/PROTOCOL.md §4.7).
    broadcast_slice: int = BROADCAST_SLICE

    def __post_init__(self) -> None:
        if self.max_offline_queue < 1:
            raise ValueError("max_offline_queue must be at least 1")
        if self.broadcast_slice < 1:
            raise ValueError("broadcast_slice must be at least 1")
        if self.expiry_sweep_interval <= 0 or self.expiry_sweep_batch < 1:
            raise ValueError("the expiry sweep needs a positive interval and batch size")
        if not self.node_id:
            object.__setattr__(self, "node_id", uuid.uuid4().hex[:12])


class Engine:
    """One node's notification engine. ``start`` before use, ``stop`` to shut down."""

    def __init__(
        self,
        store: Store,
        config: EngineConfig,
        clock: Clock | None = None,
        observer: Observer | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._observer: Observer = observer or NullObserver()
        self.peers: Peers = peers or LoneNode()
        self.node_id = config.node_id
        self._store = store
        self._hub = Hub()
        self.heartbeats = HeartbeatTimer(config.session.heartbeat_interval, self.clock)
        self._delivery = DeliveryLog(store, interval=config.delivery_flush_interval)
        self._fanin = FanIn(
            store, self._hub, clustered=self.peers.clustered, declined=self._declined
        )
        self._writer = Writer(
            store,
            self.clock,
            queue_cap=config.max_offline_queue,
            offline=self._is_offline,
            on_committed=self._on_committed,
            delivery=self._delivery,
        )
        self._connection_ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._started_at = self.clock.monotonic()
        self._messages_sent = 0
        self._dropped = 0
        #: Sessions closed here whose departure peers have not been told of yet.
        self._leaving: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: Preference reloads a peer asked for (kept so that they are not collected).
        self._reloads: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self._store.open()
        self._fanin.start_at(await self._store.last_id())
        self._started_at = self.clock.monotonic()
        self._tasks = [
            asyncio.create_task(self._writer.run(), name="tidings-writer"),
            asyncio.create_task(self._delivery.run(), name="tidings-delivery"),
            asyncio.create_task(self._fanin.run(), name="tidings-fanin"),
            asyncio.create_task(self._probe_store(), name="tidings-store-probe"),
        ]
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="tidings-expiry-sweep")
        self._running = True
        log.info("engine %s started", self.node_id)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close every session (SHUTDOWN), commit pending creates, flush marks, close the store.

        Bounded by ``timeout`` seconds whatever the store does: creates not committed by
        then fail with ``Unavailable``, marks not recorded leave their rows queued (a
        duplicate on the next connect, never a loss).
        """
        if not self._running:
            return
        self._running = False
        self.close_sessions(CloseReason.SHUTDOWN)
        self.heartbeats.close()
        background = [t for t in (self._sweeper, *self._reloads) if t is not None]
        self._sweeper = None
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._writer.close()
        deadline = asyncio.get_running_loop().time() + timeout
        writer_task, *others = self._tasks
        await self._before(deadline, writer_task, "committing pending creates")
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._before(deadline, self._delivery.flush(), "recording the last queue marks")
        await self._before(deadline, self._store.close(), "closing the store")
        log.info("engine %s stopped", self.node_id)

    @staticmethod
    async def _before(deadline: float, step: Awaitable[None], what: str) -> None:
        """Await one shutdown ``step`` until ``deadline`` (loop time, at least a moment)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(max(deadline, loop.time() + 0.1)):
                await step
        except TimeoutError:
            log.warning("shutdown: gave up %s: the store did not answer in time", what)
        except Exception as exc:
            log.warning("shutdown: %s failed: %s", what, exc)

    def close_sessions(self, reason: CloseReason) -> None:
        """Close every local session (at shutdown, before the transports stop)."""
        for session in list(self._hub):
            session.close(reason, "the server is shutting down")

    @property
    def running(self) -> bool:
        return self._running

    @property
    def healthy(self) -> bool:
        """Running, and the store answered the last call made to it."""
        return self._running and self._store.health.available

    async def health_changed(self) -> None:
        """Return when the store's availability changes."""
        await self._store.health.changed()

    # --- producers ---------------------------------------------------------------------

    async def create(self, item: NewNotification) -> Created:
        """Commit one notification and deliver it; an idempotent retry returns the first."""
        self._ensure_running()
        if item.expires_at is not None:  # the clock is read only for what it checks
            check_expires_at(item.expires_at, self.clock.now())
        (outcome,) = await self._writer.submit([item])
        return outcome

    async def create_many(self, items: Sequence[NewNotification]) -> list[Created]:
        """Commit 1–1000 notifications (validated already, e.g. under ``batch_item``) in one
        transaction, all or none, and deliver them; outcomes in the order of ``items``.

        Idempotency is per item: a key that matches an earlier notification of its user,
        or an earlier item of this batch, yields that notification with ``created=False``.
        """
        self._ensure_running()
        check_batch_size(len(items))
        now = self.clock.now()
        for index, item in enumerate(items):
            with batch_item(index):
                check_expires_at(item.expires_at, now)
        return await self._writer.submit(items)

    async def broadcast(self, content: Content, user_ids: Sequence[str] | None) -> int:
        """One notification per recipient; ``None`` means every known user. Returns how many.

        The recipients are committed in slices of ``broadcast_slice``, one transaction
        each, in order; each slice is delivered to the sessions of its users as soon as it
        is committed, and other work (creates, pings, other sessions) runs between slices,
        so that a broadcast to a hundred thousand users neither holds every row in memory
        nor stalls the node. The next slice is under way while one is written and handed
        on (``Writer``), and commits only after it. Returns once every slice is committed.
        Should a slice fail (the store went away, a shutdown), the call fails and the
        slices before it stay committed and delivered: one row per recipient of those,
        none for the rest (docs/PROTOCOL.md §4.7).
        """
        self._ensure_running()
        check_expires_at(content.expires_at, self.clock.now())
        if user_ids is None:
            recipients = await self._store.known_users()
        else:
            recipients = list(dict.fromkeys(check_user_id(u, "user_ids") for u in user_ids))
        size = self.config.broadcast_slice
        created = 0
        # Slices queued ahead, each after the one before: the writer has the next under
        # way while it finishes one, and finds the one after that queued by then. A slice
        # commits only if the one before it did.
        queued: deque[Pending] = deque()
        try:
            for start in range(0, len(recipients), size):
                items = NewNotification.for_recipients(recipients[start : start + size], content)
                queued.append(self._writer.queue(items, after=queued[-1] if queued else None))
                if len(queued) > SLICES_AHEAD:
                    created += sum(1 for o in await queued[0].future if o.created)
                    queued.popleft()
            while queued:
                created += sum(1 for o in await queued[0].future if o.created)
                queued.popleft()
        except BaseException:
            # The slices after the one that failed are withdrawn, or failed with it:
            # never committed. The caller hears of the first failure.
            for later in queued:
                if not later.future.cancel() and not later.future.cancelled():
                    later.future.exception()
            raise
        return created

    # --- sessions ----------------------------------------------------------------------

    async def connect(
        self,
        user_id: str,
        *,
        since: int | None = None,
        types: Sequence[str] | None = None,
        type_filter: TypeFilter | None = None,
        expiry: Expiry | None = None,
    ) -> Session:
        """Open a session: registered at once, then greeted with its replayed backlog.

        The initial filter is ``type_filter`` (checked like a subscribe: names and
        bounds), or else "only ``types``" when they are given, or else every type.
        With ``expiry`` (the caller's token's) the session ends when the token does,
        unless it is refreshed (see ``Session``).
        """
        self._ensure_running()
        check_user_id(user_id)
        if since is not None and (isinstance(since, bool) or since < 0):
            raise InvalidArgument("since", "must be a non-negative integer")
        if type_filter is not None:
            type_filter = _checked_filter(type_filter)
        elif types:
            type_filter = TypeFilter.everything().subscribe(check_types("types", list(types)))
        else:
            type_filter = TypeFilter.everything()
        session = Session(
            self,
            user_id=user_id,
            connection_id=f"{self.node_id}-{next(self._connection_ids)}",
            type_filter=type_filter,
            limits=self.config.session,
            expiry=expiry,
        )
        self._hub.add(session)  # from here on, live notifications (and preferences) reach it
        self._observer.session_opened()
        self.peers.presence_changed(user_id, +1)
        try:
            await self._delivery.flush()  # so that what was delivered is not replayed
            replay = await self._store.replay(
                user_id,
                since=since,
                cap=self.config.max_offline_queue,
                type_filter=type_filter,
                now=self.clock.now(),
            )
        except BaseException:
            session.close(CloseReason.CLIENT_GONE)
            raise
        # The muted types, durable and read with the replay: a change made anywhere before
        # that read is in it; one made since reached the session (and wins over this read).
        session.load_muted(replay.muted_types)
        session.begin(backlog=replay.notifications, truncated=replay.truncated)
        return session

    # --- users -------------------------------------------------------------------------

    async def mark_read(self, user_id: str, notification_id: int) -> Notification:
        """Mark one of the user's notifications read and tell all the user's sessions."""
        self._ensure_running()
        if notification_id <= 0:
            raise InvalidArgument("notification_id", "must be a positive integer")
        notification = await self._store.mark_read(user_id, notification_id, self.clock.now())
        self.deliver_read(user_id, notification_id)
        self.peers.marked_read(user_id, notification_id)
        return notification

    async def mark_seen(self, user_id: str, up_to_id: int | None) -> SeenMark:
        """Mark the user's unseen notifications with ids up to ``up_to_id`` (None or 0:
        the newest) seen, and tell every session of the user once."""
        self._ensure_running()
        check_user_id(user_id)
        upto = _optional_id("up_to_id", up_to_id)
        used, changed = await self._store.mark_seen(user_id, upto, self.clock.now())
        self._tell(user_id, NotificationsSeen(used))
        return SeenMark(used, changed)

    async def mark_all_read(
        self, user_id: str, notification_type: str | None, up_to_id: int | None
    ) -> ReadAllMark:
        """Mark the user's unread notifications (of ``notification_type`` when given, up
        to ``up_to_id``; None or 0: the newest; archived ones included) read, and tell
        every session of the user once."""
        self._ensure_running()
        check_user_id(user_id)
        if notification_type is not None:
            check_text("notification_type", notification_type, TYPE_MAX, required=True)
        upto = _optional_id("up_to_id", up_to_id)
        used, changed = await self._store.mark_all_read(
            user_id, notification_type, upto, self.clock.now()
        )
        self._tell(user_id, NotificationsMarkedRead(used, notification_type))
        return ReadAllMark(used, changed)

    async def archive(self, user_id: str, notification_id: int) -> Notification:
        """Archive one of the user's notifications (idempotent: it keeps its first
        ``archived_at``) and tell every session; ``NotFound`` as ``mark_read``."""
        return await self._set_archived(user_id, notification_id, archived=True)

    async def unarchive(self, user_id: str, notification_id: int) -> Notification:
        """Take one of the user's notifications out of the archive (idempotent) and tell
        every session; ``NotFound`` as ``mark_read``."""
        return await self._set_archived(user_id, notification_id, archived=False)

    async def delete(self, user_id: str, notification_id: int) -> None:
        """Delete one of the user's notifications for good (from every list, count, replay
        and resume) and tell every session; ``NotFound`` as ``mark_read``."""
        self._ensure_running()
        check_user_id(user_id)
        nid = _positive_id("notification_id", notification_id)
        await self._store.delete(user_id, nid)
        self._tell(user_id, NotificationDeleted(nid))

    async def counts(self, user_id: str) -> Counts:
        """The user's unread and unseen figures, in total and per type (not archived, not
        expired; the totals without muted types unless a row ignores mutes)."""
        self._ensure_running()
        check_user_id(user_id)
        return await self._store.counts(user_id, now=self.clock.now())

    async def preferences(self, user_id: str) -> Preferences:
        """The user's preferences (no muted types for a user who never set any)."""
        self._ensure_running()
        check_user_id(user_id)
        return await self._store.preferences(user_id)

    async def update_preferences(self, user_id: str, muted_types: Sequence[str]) -> Preferences:
        """Replace the user's muted types (sorted, unique, at most 256); every session of
        the user, on every node, applies them at once and is told."""
        self._ensure_running()
        check_user_id(user_id)
        if isinstance(muted_types, str) or not isinstance(muted_types, Sequence):
            raise InvalidArgument("muted_types", "must be a list of strings")
        preferences = Preferences(tuple(muted_types))
        await self._store.set_preferences(user_id, preferences)
        self._tell(user_id, PreferencesUpdated(preferences.muted_types))
        return preferences

    async def sweep_expired(self) -> int:
        """One expiry sweep: delete expired rows, at most ``EXPIRY_SWEEP_BATCHES`` batches
        of ``expiry_sweep_batch``; how many went."""
        batch = self.config.expiry_sweep_batch
        total = 0
        for _ in range(EXPIRY_SWEEP_BATCHES):
            gone = await self._store.delete_expired(self.clock.now(), batch)
            total += gone
            if gone < batch:
                break
        return total

    async def list_notifications(
        self,
        user_id: str,
        query: InboxQuery | None = None,
        *,
        unread_only: bool = False,
        limit: int | None = None,
        before_id: int | None = None,
    ) -> Page:
        """The user's inbox, newest first: ``query``, or else the older keywords."""
        self._ensure_running()
        if query is None:
            if before_id is not None and before_id < 1:
                raise InvalidArgument("before_id", "must be a positive integer")
            query = InboxQuery(
                unread_only=unread_only, limit=clamp_limit(limit), before_id=before_id
            )
        return await self._store.inbox(user_id, query, now=self.clock.now())

    async def unread_count(self, user_id: str) -> int:
        """``counts(user_id).unread``."""
        return (await self.counts(user_id)).unread

    # --- operators ---------------------------------------------------------------------

    async def stats(self) -> Stats:
        """This node's figures and the cluster's, all taken at one instant (after the
        store's queue count): the cluster totals are the sums of the ``nodes`` entries."""
        self._ensure_running()
        queued = await self._store.queued_count()
        node = self.node_stats()
        others = self.peers.remote_nodes()
        nodes = (node, *others)
        cluster = ClusterStats(
            total_connections=sum(n.total_connections for n in nodes),
            unique_users=len(set(self._hub.users()) | self.peers.users_elsewhere()),
            nodes=len(nodes),
        )
        return Stats(
            node_id=self.node_id,
            total_connections=cluster.total_connections,
            unique_users=cluster.unique_users,
            messages_sent=sum(n.messages_sent for n in nodes),
            queued=queued,
            dropped=sum(n.dropped for n in nodes),
            uptime_s=node.uptime_s,
            nodes=nodes,
            cluster=cluster,
        )

    def node_stats(self) -> NodeStats:
        return NodeStats(
            node_id=self.node_id,
            total_connections=self._hub.connection_count,
            unique_users=self._hub.user_count,
            messages_sent=self._messages_sent,
            dropped=self._dropped,
            uptime_s=round(self.clock.monotonic() - self._started_at, 3),
        )

    async def status(self, user_id: str) -> ConnectionStatus:
        self._ensure_running()
        check_user_id(user_id)
        count = len(self._hub.sessions_of(user_id)) + self.peers.sessions_elsewhere(user_id)
        return ConnectionStatus(user_id, count)

    async def disconnect(self, user_id: str) -> int:
        """Close every session of the user on every node; how many there were."""
        self._ensure_running()
        check_user_id(user_id)
        elsewhere = self.peers.sessions_elsewhere(user_id)
        if elsewhere:
            self.peers.disconnect(user_id)
        return self.disconnect_local(user_id) + elsewhere

    # --- peers ---------------------------------------------------------------------------

    def disconnect_local(self, user_id: str) -> int:
        """Close the user's sessions on this node; how many there were."""
        sessions = self._hub.sessions_of(user_id)
        for session in sessions:
            session.close(CloseReason.DISCONNECTED, "disconnected by an operator")
        return len(sessions)

    def undelivered(self, notification_ids: list[int]) -> None:
        """A transport took these notifications but could not pass them on: queue them."""
        self._delivery.failed(notification_ids)

    def deliver_read(self, user_id: str, notification_id: int) -> None:
        """Tell the user's sessions on this node that a notification was read."""
        self._hub.push(user_id, MarkedRead(notification_id))

    def deliver_inbox_event(self, user_id: str, event: InboxEvent) -> None:
        """Tell the user's sessions on this node of a change to the inbox (new muted types
        apply at once)."""
        if isinstance(event, PreferencesUpdated):
            for session in self._hub.sessions_of(user_id):
                session.set_muted(event.muted_types)
        self._hub.push(user_id, event)

    def preferences_changed(self, user_id: str) -> None:
        """A peer changed the user's preferences: read them and tell the sessions here."""
        if not self._running or not self._hub.has(user_id):
            return  # a session opened later reads them at connect
        task = asyncio.get_running_loop().create_task(self._reload_preferences(user_id))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def advance_to(self, last_id: int) -> None:
        """Notifications up to ``last_id`` were committed (by a peer): deliver the local ones."""
        self._fanin.advance_to(last_id)

    async def resync(self) -> None:
        """Deliver whatever was committed and not yet offered here (after a broker outage)."""
        self._fanin.advance_to(await self._store.last_id())

    def local_presence(self) -> dict[str, int]:
        """Sessions per user on this node, as told to peers (see ``on_closed``)."""
        counts = {user: len(self._hub.sessions_of(user)) for user in self._hub.users()}
        for user, n in self._leaving.items():
            counts[user] = counts.get(user, 0) + n
        return counts

    # --- SessionHost -------------------------------------------------------------------

    def on_written(self, session: Session, envelope: Envelope) -> None:
        self._messages_sent += 1
        if envelope.queued:
            self._delivery.delivered(envelope.notification.id)
        self._observer.written(envelope.notification, envelope.age())

    def on_closed(self, session: Session, undelivered: list[Envelope]) -> None:
        self._hub.remove(session)
        lost = [e.notification.id for e in undelivered if not e.queued]
        if lost:
            self._delivery.failed(lost)
        # Peers apply the queue cap to users they think offline: tell them only once what
        # this session took is out of the queue, or the cap would count it as a drop.
        user = session.user_id
        self._leaving[user] = self._leaving.get(user, 0) + 1
        self._delivery.when_recorded(lambda: self._left(user))
        self._observer.session_closed(session.close_reason or CloseReason.CLIENT_GONE)

    # --- internals ---------------------------------------------------------------------

    async def _set_archived(
        self, user_id: str, notification_id: int, *, archived: bool
    ) -> Notification:
        self._ensure_running()
        check_user_id(user_id)
        nid = _positive_id("notification_id", notification_id)
        notification = await self._store.set_archived(user_id, nid, archived, self.clock.now())
        self._tell(user_id, NotificationArchived(nid) if archived else NotificationUnarchived(nid))
        return notification

    def _tell(self, user_id: str, event: InboxEvent) -> None:
        """Tell every session of the user, here and on every other node, once."""
        self.deliver_inbox_event(user_id, event)
        self.peers.inbox_changed(user_id, event)

    async def _reload_preferences(self, user_id: str) -> None:
        try:
            preferences = await self._store.preferences(user_id)
        except Exception as exc:
            log.warning("could not read the preferences of a user a peer changed: %s", exc)
            return
        self.deliver_inbox_event(user_id, PreferencesUpdated(preferences.muted_types))

    async def _sweep_loop(self) -> None:
        """Delete expired rows every ``expiry_sweep_interval`` seconds (a bounded sweep)."""
        while True:
            await asyncio.sleep(self.config.expiry_sweep_interval)
            try:
                gone = await self.sweep_expired()
            except Exception as exc:
                log.warning("expiry sweep failed: %s", exc)
                continue
            if gone:
                log.debug("expiry sweep deleted %d notifications", gone)

    def _declined(self, notification: Notification) -> None:
        # The user is online and every session here chose not to receive it: it is in the
        # inbox only (docs/PROTOCOL.md §4.2) — unless a session elsewhere may still take it.
        if not self.peers.sessions_elsewhere(notification.user_id):
            self._delivery.delivered(notification.id)

    def _left(self, user_id: str) -> None:
        if self._leaving[user_id] == 1:
            del self._leaving[user_id]
        else:
            self._leaving[user_id] -= 1
        self.peers.presence_changed(user_id, -1)

    def _is_offline(self, user_id: str) -> bool:
        return not self._hub.has(user_id) and not self.peers.sessions_elsewhere(user_id)

    def _on_committed(self, notifications: Sequence[Notification], result: CreateResult) -> None:
        dropped = sum(result.dropped.values())
        if dropped:
            self._dropped += dropped
            self._observer.dropped(dropped)
        self._observer.created(notifications)
        self._fanin.committed_here(notifications, result.queued)
        if notifications:
            self.peers.created(notifications[-1].id)

    async def _probe_store(self) -> None:
        """Ping the store when nothing else was answered lately: health follows it anyway."""
        health = self._store.health
        answers = -1
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if health.available and health.answers != answers:
                answers = health.answers  # traffic is answered: no need to ask
                continue
            before = health.answers
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._store.ping()
            except TimeoutError:
                # Other calls answered meanwhile: the store works and the ping's answer
                # waited for a busy event loop (a connect storm), which is no outage.
                if health.answers == before:
                    health.failed(f"no answer to a ping within {PROBE_TIMEOUT:g} s")
                else:
                    log.debug("store ping slow while other calls were answered")
            except StoreUnavailable:
                pass  # recorded by the store
            except Exception as exc:
                log.debug("store probe failed: %s", exc)
            answers = health.answers

    def _ensure_running(self) -> None:
        if not self._running:
            raise Unavailable("the engine is not running")


def _positive_id(field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument(field_name, "must be a positive integer")
    return value


def _optional_id(field_name: str, value: object) -> int | None:
    """An optional id bound: None or 0 mean "the newest" (None); else a positive id."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    return _positive_id(field_name, value)


def _checked_filter(type_filter: TypeFilter) -> TypeFilter:
    """``type_filter`` as a subscribe would have built it: names checked, lists bounded."""
    if type_filter.only is not None:
        return TypeFilter(only=frozenset()).subscribe(
            check_types("types", sorted(type_filter.only))
        )
    return TypeFilter.everything().unsubscribe(check_types("types", sorted(type_filter.excluded)))
