"""What this node knows of the others: their sessions per user and their figures.

Each node's session counts arrive as numbered deltas. A gap in the numbering (a
message lost while the broker was away) or a heartbeat announcing a version we do
not have makes the table ask that node for a full snapshot. A node whose heartbeats
stop for ``expiry`` seconds is forgotten, so a node killed with SIGKILL does not
leave its users "online" forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.cluster.messages import NodeHeartbeat, PresenceDelta, PresenceSnapshot
from server.engine.models import NodeStats


@dataclass(slots=True)
class RemoteNode:
    """One other node, as last heard."""

    node_id: str
    last_seen: float
    version: int = -1  # the presence version applied; -1 = never had a snapshot
    counts: dict[str, int] = field(default_factory=dict)
    stats: NodeStats | None = None
    pending: dict[int, dict[str, int]] = field(default_factory=dict)  # snapshot parts
    pending_version: int = -1


class PresenceTable:
    """Remote nodes' session counts. ``apply_*`` return True when a snapshot is needed."""

    def __init__(self, expiry: float) -> None:
        self._expiry = expiry
        self._nodes: dict[str, RemoteNode] = {}

    def _node(self, node_id: str, now: float) -> RemoteNode:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = RemoteNode(node_id, now)
        node.last_seen = now
        return node

    def apply_delta(self, msg: PresenceDelta, now: float) -> bool:
        node = self._node(msg.node, now)
        if node.version < 0 or msg.version != node.version + 1:
            return node.pending_version < 0  # out of step: ask, unless already asking
        node.version = msg.version
        for user, delta in msg.deltas.items():
            count = node.counts.get(user, 0) + delta
            if count > 0:
                node.counts[user] = count
            else:
                node.counts.pop(user, None)
        return False

    def apply_snapshot(self, msg: PresenceSnapshot, now: float) -> bool:
        node = self._node(msg.node, now)
        if msg.version != node.pending_version:
            node.pending, node.pending_version = {}, msg.version
        node.pending[msg.part] = msg.counts
        if len(node.pending) == msg.parts:
            node.counts = {u: c for part in node.pending.values() for u, c in part.items()}
            node.version = msg.version
            node.pending, node.pending_version = {}, -1
        return False

    def apply_heartbeat(self, msg: NodeHeartbeat, now: float) -> bool:
        node = self._node(msg.node, now)
        node.stats = NodeStats(
            node_id=msg.node,
            total_connections=msg.connections,
            unique_users=msg.users,
            messages_sent=msg.messages_sent,
            dropped=msg.dropped,
            uptime_s=msg.uptime_s,
        )
        return msg.version != node.version and node.pending_version < 0

    def forget(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    def expire(self, now: float) -> list[str]:
        """Forget nodes not heard from for ``expiry`` seconds; their ids."""
        gone = [n for n, node in self._nodes.items() if now - node.last_seen > self._expiry]
        for node_id in gone:
            del self._nodes[node_id]
        return gone

    def sessions(self, user_id: str) -> int:
        return sum(node.counts.get(user_id, 0) for node in self._nodes.values())

    def users(self) -> set[str]:
        found: set[str] = set()
        for node in self._nodes.values():
            found.update(node.counts)
        return found

    def stats(self) -> list[NodeStats]:
        """Each node's figures: sessions and users from the presence counts (so that they
        add up to ``sessions``/``users``), the rest from its last heartbeat."""
        return [
            NodeStats(
                node_id=node.node_id,
                total_connections=sum(node.counts.values()),
                unique_users=len(node.counts),
                messages_sent=node.stats.messages_sent if node.stats else 0,
                dropped=node.stats.dropped if node.stats else 0,
                uptime_s=node.stats.uptime_s if node.stats else 0.0,
            )
            for node in self._nodes.values()
        ]
