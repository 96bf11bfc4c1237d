"""The rest of the cluster, as the engine sees it: a narrow interface, and the lone-node default.

The engine tells its peers what happened here (commits, reads, disconnects, sessions
coming and going) and asks them what they know (who is connected elsewhere, the
other nodes' figures). How that travels — PostgreSQL NOTIFY, Redis, nothing — is
not the engine's business: see ``server.cluster``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.engine.events import InboxEvent
from server.engine.models import NodeStats


class Peers(Protocol):
    """What the engine asks of and tells the other nodes. Calls must not block."""

    @property
    def clustered(self) -> bool:
        """Whether other nodes may create notifications in the same store."""
        ...

    def sessions_elsewhere(self, user_id: str) -> int:
        """Live sessions of ``user_id`` on other nodes, as last heard."""
        ...

    def users_elsewhere(self) -> set[str]:
        """Users with a live session on another node."""
        ...

    def remote_nodes(self) -> Sequence[NodeStats]:
        """The other live nodes' figures: sessions and users as ``sessions_elsewhere`` and
        ``users_elsewhere`` count them now, the rest from their latest heartbeat."""
        ...

    def created(self, last_id: int) -> None:
        """Notifications up to ``last_id`` were committed here."""
        ...

    def marked_read(self, user_id: str, notification_id: int) -> None: ...

    def inbox_changed(self, user_id: str, event: InboxEvent) -> None:
        """Tell every node's sessions of the user (``Engine.deliver_inbox_event``); new
        preferences are read from the store there (``Engine.preferences_changed``)."""
        ...

    def disconnect(self, user_id: str) -> None:
        """Ask every node to close the user's sessions."""
        ...

    def presence_changed(self, user_id: str, delta: int) -> None:
        """A session of ``user_id`` opened (+1) or closed (-1) here."""
        ...


class LoneNode:
    """A single node: nobody else to tell or ask."""

    @property
    def clustered(self) -> bool:
        return False

    def sessions_elsewhere(self, user_id: str) -> int:
        return 0

    def users_elsewhere(self) -> set[str]:
        return set()

    def remote_nodes(self) -> Sequence[NodeStats]:
        return ()

    def created(self, last_id: int) -> None:
        return None

    def marked_read(self, user_id: str, notification_id: int) -> None:
        return None

    def inbox_changed(self, user_id: str, event: InboxEvent) -> None:
        return None

    def disconnect(self, user_id: str) -> None:
        return None

    def presence_changed(self, user_id: str, delta: int) -> None:
        return None
