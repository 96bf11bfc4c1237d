"""What happened to the user's inbox, as a live session hears it (docs/PROTOCOL.md §5).

Each event comes from any session or call of the user, on any node: another device
marking the list seen, this application archiving one, an operator's script muting a
type. A ``Subscriber`` hands them to its ``on_event`` listener, in wire order, as these
frozen dataclasses; match on them::

    def on_event(event: InboxEvent) -> None:
        match event:
            case NotificationsSeen(up_to_id=n):
                badge.clear_up_to(n)
            case NotificationDeleted(notification_id=n):
                view.remove(n)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NotificationMarkedRead:
    """One notification was marked read."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationsSeen:
    """Every notification with an id up to ``up_to_id`` is now seen (the badge clears)."""

    up_to_id: int


@dataclass(frozen=True, slots=True)
class NotificationsMarkedRead:
    """Every notification up to ``up_to_id`` (of ``notification_type`` only, unless None)
    is now read: one event for the whole mark all read."""

    up_to_id: int
    notification_type: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationArchived:
    """A notification left the default list and the counts."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationUnarchived:
    """An archived notification came back."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class NotificationDeleted:
    """A notification is gone for good (from every list, count and replay)."""

    notification_id: int


@dataclass(frozen=True, slots=True)
class PreferencesUpdated:
    """The user's muted types are now ``muted_types`` (sorted)."""

    muted_types: tuple[str, ...]


InboxEvent = (
    NotificationMarkedRead
    | NotificationsSeen
    | NotificationsMarkedRead
    | NotificationArchived
    | NotificationUnarchived
    | NotificationDeleted
    | PreferencesUpdated
)
#: Called with every inbox event of the live session; must not block.
InboxListener = Callable[[InboxEvent], None]
