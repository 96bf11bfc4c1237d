"""The Inbox: one user's stored notifications, through the unary calls of NotificationStream.

A live ``Subscriber`` receives; an ``Inbox`` looks back and acts: list with filters,
counts for the badge, mark seen, mark (all) read, archive, delete, and the preferences
(muted types). Every change is told to every live session of the user as an inbox event
(``tidings.client.events``), whichever node it runs on.

Each call has a deadline (``timeout``, covering all its attempts) and UNAVAILABLE is
retried with backoff, at most ``retries`` times, except for ``delete``: a retried delete
whose first attempt went through would fail with ``NotFoundError``, which would hide
that it worked. Every other call may be repeated without harm (marks and archive are
idempotent; ``update_preferences`` replaces the whole set).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from typing import TypeVar

from tidings.client import convert
from tidings.client.calls import UnaryClient
from tidings.client.models import (
    Counts,
    MarkResult,
    Notification,
    Page,
    Preferences,
    Priority,
)
from tidings.v1 import stream_pb2, stream_pb2_grpc

T = TypeVar("T")


class Inbox(UnaryClient):
    """The caller's own inbox.

    ::

        async with Inbox("127.0.0.1:50051", token=jwt) as inbox:
            counts = await inbox.counts()              # the badge
            page = await inbox.list(types=["comment"], read=False)
            await inbox.mark_seen()                    # the bell was opened
            await inbox.archive(page.notifications[0].id)
            await inbox.update_preferences(muted_types=["digest"])

    Give ``token`` in secure mode, or ``user`` against a server in insecure development
    mode. An id that is not the caller's raises ``NotFoundError``; a bad argument
    ``InvalidArgumentError`` whose ``field`` names it, and changes nothing.
    """

    @cached_property
    def _stub(self) -> stream_pb2_grpc.NotificationStreamAsyncStub:
        return stream_pb2_grpc.NotificationStreamStub(self._channel)

    # --- reading -----------------------------------------------------------------------

    async def list(
        self,
        *,
        types: Iterable[str] = (),
        read: bool | None = None,
        seen: bool | None = None,
        archived: bool = False,
        priorities: Iterable[Priority | str] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        unread_only: bool = False,
        limit: int = 0,
        before_id: int | None = None,
        timeout: float | None = None,
    ) -> Page:
        """One page of the caller's notifications, newest first.

        Filters combine: ``types`` and ``priorities`` (any of them; empty: all),
        ``read`` / ``seen`` (only true or only false ones; None: both), ``archived``
        (only archived ones; by default only the others), ``created_after`` /
        ``created_before`` (strict, aware datetimes). ``limit`` is 1–200 (0: 50). The
        next page is ``before_id=page.next_before_id``; the cursor stays put while new
        notifications arrive. Muted types are listed; expired ones are not.
        """
        request = stream_pb2.ListNotificationsRequest(
            unread_only=unread_only,
            limit=limit,
            before_id=before_id or 0,
            types=list(types),
            archived=archived,
            priorities=[convert.priority_to_pb(p) for p in priorities],
        )
        if read is not None:
            request.read = read
        if seen is not None:
            request.seen = seen
        if created_after is not None:
            request.created_after.CopyFrom(convert.timestamp(created_after))
        if created_before is not None:
            request.created_before.CopyFrom(convert.timestamp(created_before))
        response = await self._call(
            lambda remaining: self._stub.ListNotifications(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return Page(
            notifications=tuple(convert.notification(n) for n in response.notifications),
            has_more=response.has_more,
        )

    async def counts(self, *, timeout: float | None = None) -> Counts:
        """Unread and unseen, in total (muted types left out) and per type."""
        response = await self._call(
            lambda remaining: self._stub.GetCounts(
                stream_pb2.GetCountsRequest(),
                timeout=remaining,
                metadata=self._identity.metadata(),
            ),
            timeout,
        )
        return convert.counts(response)

    async def unread_count(self, *, timeout: float | None = None) -> int:
        """How many are unread (the same as ``counts().unread``)."""
        response = await self._call(
            lambda remaining: self._stub.GetUnreadCount(
                stream_pb2.GetUnreadCountRequest(),
                timeout=remaining,
                metadata=self._identity.metadata(),
            ),
            timeout,
        )
        return response.unread

    async def preferences(self, *, timeout: float | None = None) -> Preferences:
        """The caller's stored preferences."""
        response = await self._call(
            lambda remaining: self._stub.GetPreferences(
                stream_pb2.GetPreferencesRequest(),
                timeout=remaining,
                metadata=self._identity.metadata(),
            ),
            timeout,
        )
        return Preferences(muted_types=tuple(response.muted_types))

    # --- acting ------------------------------------------------------------------------

    async def mark_read(
        self, notification_id: int, *, timeout: float | None = None
    ) -> Notification:
        """Mark one notification read; returns it as stored now."""
        request = stream_pb2.MarkReadRequest(notification_id=notification_id)
        response = await self._call(
            lambda remaining: self._stub.MarkRead(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return convert.notification(response.notification)

    async def mark_seen(
        self, up_to_id: int | None = None, *, timeout: float | None = None
    ) -> MarkResult:
        """Mark every notification up to ``up_to_id`` (None: the newest) seen: the badge
        clears. Already seen ones keep their ``seen_at``."""
        request = stream_pb2.MarkSeenRequest(up_to_id=up_to_id or 0)
        response = await self._call(
            lambda remaining: self._stub.MarkSeen(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return MarkResult(up_to_id=response.up_to_id, changed=response.seen)

    async def mark_all_read(
        self,
        notification_type: str | None = None,
        *,
        up_to_id: int | None = None,
        timeout: float | None = None,
    ) -> MarkResult:
        """Mark every unread notification read (archived ones too): of
        ``notification_type`` only when given, up to ``up_to_id`` when given. Every live
        session hears one ``NotificationsMarkedRead``, not one event per notification."""
        request = stream_pb2.MarkAllReadRequest(
            notification_type=notification_type or "", up_to_id=up_to_id or 0
        )
        response = await self._call(
            lambda remaining: self._stub.MarkAllRead(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return MarkResult(up_to_id=response.up_to_id, changed=response.read)

    async def archive(self, notification_id: int, *, timeout: float | None = None) -> Notification:
        """Move one notification out of the default list and the counts (again: no-op)."""
        request = stream_pb2.ArchiveNotificationRequest(notification_id=notification_id)
        response = await self._call(
            lambda remaining: self._stub.ArchiveNotification(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return convert.notification(response.notification)

    async def unarchive(
        self, notification_id: int, *, timeout: float | None = None
    ) -> Notification:
        """Bring an archived notification back to the default list."""
        request = stream_pb2.UnarchiveNotificationRequest(notification_id=notification_id)
        response = await self._call(
            lambda remaining: self._stub.UnarchiveNotification(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return convert.notification(response.notification)

    async def delete(self, notification_id: int, *, timeout: float | None = None) -> None:
        """Delete one notification for good: gone from every list, count and replay.
        Not retried (see the module doc)."""
        request = stream_pb2.DeleteNotificationRequest(notification_id=notification_id)
        await self._call(
            lambda remaining: self._stub.DeleteNotification(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=False,
        )

    async def update_preferences(
        self, *, muted_types: Iterable[str], timeout: float | None = None
    ) -> Preferences:
        """Replace the caller's muted types (at most 256, each 1–64 characters); returns
        them as stored (sorted, unique). Muted types are still stored and listed, but not
        pushed to live sessions, replayed or counted in the totals."""
        request = stream_pb2.UpdatePreferencesRequest(muted_types=list(muted_types))
        response = await self._call(
            lambda remaining: self._stub.UpdatePreferences(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
        )
        return Preferences(muted_types=tuple(response.muted_types))
