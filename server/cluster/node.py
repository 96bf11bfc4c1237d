"""This node's membership of a cluster: the engine's ``Peers`` over a ``Broker``.

Outgoing, one sender task publishes in order what the engine reported: the highest
committed id (coalesced), presence deltas (numbered), reads, disconnects, and a
heartbeat every ``heartbeat_interval`` with this node's figures. Incoming, it hands
commits, reads and disconnects to the engine and keeps the presence table.

Recovery needs no broker guarantee: every tick the engine reads the store's last id
and delivers whatever it has not offered yet (so a lost "created" costs at most one
tick of latency), and presence heals through snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from server.broker.base import Broker, BrokerUnavailable
from server.cluster import messages as m
from server.cluster.presence import PresenceTable
from server.engine.clock import Clock, SystemClock
from server.engine.events import InboxEvent
from server.engine.models import NodeStats

if TYPE_CHECKING:
    from server.engine import Engine

log = logging.getLogger(__name__)

#: Reads, inbox changes and disconnects kept for a retry while the broker is away.
MAX_RETRY_MESSAGES = 1000


class Cluster:
    """Implements ``server.engine.peers.Peers`` and ``server.broker.BrokerListener``."""

    def __init__(
        self,
        broker: Broker,
        node_id: str,
        *,
        clock: Clock | None = None,
        heartbeat_interval: float = 1.0,
        expiry: float = 3.5,
    ) -> None:
        self.node_id = node_id
        self._broker = broker
        self._clock = clock or SystemClock()
        self._interval = heartbeat_interval
        self._table = PresenceTable(expiry)
        self._engine: Engine | None = None
        self._wake = asyncio.Event()
        self._version = 0
        self._deltas: dict[str, int] = {}
        self._created = 0
        self._created_sent = 0
        self._outbox: list[m.Message] = []
        self._snapshot_wanted = True
        self._hello_wanted = False
        self._beat_due = False
        self._asked: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, engine: Engine) -> None:
        self._engine = engine

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="tidings-cluster-send"),
            asyncio.create_task(self._tick_loop(), name="tidings-cluster-tick"),
        ]
        await self._broker.start(self)

    async def stop(self) -> None:
        """Say goodbye (best effort) and disconnect."""
        with contextlib.suppress(BrokerUnavailable):
            await self._broker.publish(m.encode(m.Bye(self.node_id)))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._broker.close()

    # --- Peers ---------------------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        return True

    def sessions_elsewhere(self, user_id: str) -> int:
        return self._table.sessions(user_id)

    def users_elsewhere(self) -> set[str]:
        return self._table.users()

    def remote_nodes(self) -> Sequence[NodeStats]:
        return self._table.stats()

    def created(self, last_id: int) -> None:
        self._created = max(self._created, last_id)
        self._wake.set()

    def marked_read(self, user_id: str, notification_id: int) -> None:
        self._queue(m.Read(self.node_id, user_id, notification_id))

    def inbox_changed(self, user_id: str, event: InboxEvent) -> None:
        self._queue(m.inbox_message(self.node_id, user_id, event))

    def disconnect(self, user_id: str) -> None:
        self._queue(m.Disconnect(self.node_id, user_id))

    def presence_changed(self, user_id: str, delta: int) -> None:
        self._deltas[user_id] = self._deltas.get(user_id, 0) + delta
        self._wake.set()

    # --- BrokerListener ------------------------------------------------------------------

    def on_connected(self) -> None:
        """Rejoin: ask everyone for snapshots, offer ours, and catch up from the store."""
        self._hello_wanted = True
        self._snapshot_wanted = True
        self._beat_due = True
        self._wake.set()
        if self._engine is not None:
            asyncio.get_running_loop().create_task(self._engine.resync())

    def on_message(self, payload: bytes) -> None:
        msg = m.decode(payload)
        if msg is None or msg.node == self.node_id or self._engine is None:
            return
        now = self._clock.monotonic()
        match msg:
            case m.Committed(_, last_id):
                self._engine.advance_to(last_id)
            case m.Read(_, user_id, notification_id):
                self._engine.deliver_read(user_id, notification_id)
            case m.Inbox(_, user_id, kind):
                if kind == m.PREFERENCES:
                    self._engine.preferences_changed(user_id)
                elif (event := m.inbox_event(msg)) is not None:
                    self._engine.deliver_inbox_event(user_id, event)
            case m.Disconnect(_, user_id):
                self._engine.disconnect_local(user_id)
            case m.PresenceDelta():
                if self._table.apply_delta(msg, now):
                    self._ask(msg.node, now)
            case m.PresenceSnapshot():
                self._table.apply_snapshot(msg, now)
            case m.NodeHeartbeat():
                if self._table.apply_heartbeat(msg, now):
                    self._ask(msg.node, now)
            case m.Hello():
                self._snapshot_wanted = True
                self._wake.set()
            case m.SnapshotRequest(_, target):
                if target == self.node_id:
                    self._snapshot_wanted = True
                    self._wake.set()
            case m.Bye(node):
                self._table.forget(node)

    # --- internals -------------------------------------------------------------------------

    def _queue(self, msg: m.Message) -> None:
        if len(self._outbox) < MAX_RETRY_MESSAGES:
            self._outbox.append(msg)
        self._wake.set()

    def _ask(self, node: str, now: float) -> None:
        if now - self._asked.get(node, -1e9) >= self._interval:
            self._asked[node] = now
            self._queue(m.SnapshotRequest(self.node_id, node))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._beat_due = True
            self._wake.set()
            for node in self._table.expire(self._clock.monotonic()):
                log.info("cluster: node %s stopped answering; forgetting its sessions", node)
            if self._engine is not None:
                try:
                    await self._engine.resync()
                except Exception:
                    log.warning("cluster: catch-up from the store failed", exc_info=True)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = self._build()
            for i, msg in enumerate(batch):
                try:
                    await self._broker.publish(m.encode(msg))
                except BrokerUnavailable:
                    retry = [x for x in batch[i:] if isinstance(x, m.Read | m.Inbox | m.Disconnect)]
                    self._outbox[:0] = retry[: MAX_RETRY_MESSAGES - len(self._outbox)]
                    await asyncio.sleep(self._interval / 4)
                    break

    def _build(self) -> list[m.Message]:
        """What to publish now, in order; presence state is captured synchronously."""
        out: list[m.Message] = []
        if self._hello_wanted:
            self._hello_wanted = False
            out.append(m.Hello(self.node_id))
        if self._snapshot_wanted:
            self._snapshot_wanted = False
            out.extend(self._snapshot())
        elif self._deltas:
            deltas, self._deltas = {u: d for u, d in self._deltas.items() if d}, {}
            if deltas:
                self._version += 1
                out.append(m.PresenceDelta(self.node_id, self._version, deltas))
        if self._created > self._created_sent:
            self._created_sent = self._created
            out.append(m.Committed(self.node_id, self._created))
        out.extend(self._outbox)
        self._outbox.clear()
        if self._beat_due and self._engine is not None:
            self._beat_due = False
            stats = self._engine.node_stats()
            out.append(
                m.NodeHeartbeat(
                    self.node_id,
                    self._version,
                    stats.total_connections,
                    stats.unique_users,
                    stats.messages_sent,
                    stats.dropped,
                    stats.uptime_s,
                )
            )
        return out

    def _snapshot(self) -> list[m.PresenceSnapshot]:
        """The full session counts, split to fit the broker; folds pending deltas in."""
        counts = self._engine.local_presence() if self._engine is not None else {}
        self._deltas = {}
        self._version += 1
        budget = max(256, self._broker.max_payload - 200)
        parts: list[dict[str, int]] = [{}]
        size = 0
        for user, count in counts.items():
            cost = len(user.encode()) * 2 + 16  # JSON escaping can double a string
            if size + cost > budget and parts[-1]:
                parts.append({})
                size = 0
            parts[-1][user] = count
            size += cost
        return [
            m.PresenceSnapshot(self.node_id, self._version, i, len(parts), part)
            for i, part in enumerate(parts)
        ]
