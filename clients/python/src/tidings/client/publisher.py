"""The Publisher: the producer and operator calls of NotificationAdminService.

Every call has a deadline (``timeout``, covering all its attempts). A call that fails
with UNAVAILABLE is retried with backoff, at most ``retries`` times, when a retry is
safe: ``create`` (and every item of ``create_many``) carries an idempotency key
(docs/PROTOCOL.md §3), generated once per call and sent again on every retry, so a retry after
a lost answer returns the notification the first attempt made instead of making a
second; reads and ``disconnect`` are safe as they are. ``broadcast`` is never retried:
the protocol gives it no idempotency key, and a broadcast whose answer was lost may well
have been delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from tidings.client import convert
from tidings.client.calls import UnaryClient
from tidings.client.models import (
    ConnectionStatus,
    CreateResult,
    NewNotification,
    Priority,
    Stats,
)
from tidings.v1 import admin_pb2, admin_pb2_grpc

T = TypeVar("T")


class Publisher(UnaryClient):
    """Creates and broadcasts notifications, and asks or acts on connections.

    ::

        async with Publisher("127.0.0.1:50051", token=admin_jwt) as pub:
            result = await pub.create("42", "welcome", "Hello", data={"plan": "pro"})
            print(result.notification.id)

    The caller needs the admin role (a JWT whose ``roles`` hold ``admin``), except for
    ``status`` of its own user id. Against an insecure development server no token is
    needed (``user`` may pick the caller).
    """

    @cached_property
    def _stub(self) -> admin_pb2_grpc.NotificationAdminServiceAsyncStub:
        return admin_pb2_grpc.NotificationAdminServiceStub(self._channel)

    # --- calls -------------------------------------------------------------------------

    async def create(
        self,
        user_id: str | int,
        type: str,
        title: str,
        *,
        message: str = "",
        data: dict[str, Any] | None = None,
        priority: Priority | str = Priority.NORMAL,
        idempotency_key: str | None = None,
        expires_at: datetime | None = None,
        ignore_mutes: bool = False,
        timeout: float | None = None,
    ) -> CreateResult:
        """Create one notification for ``user_id``; committed before anyone is told.

        ``idempotency_key`` defaults to a fresh UUID, reused by this call's retries; pass
        your own to make retries of *your* operation (e.g. a job re-run) safe as well.
        ``expires_at`` (an aware datetime, in the future, else ``InvalidArgumentError``
        with field ``expires_at``) ends its life: never delivered, listed or counted
        after it. ``ignore_mutes`` delivers it even to users who muted ``type``.
        """
        request = _request(
            user_id, type, title, message, data, priority, idempotency_key, expires_at, ignore_mutes
        )
        response = await self._call(
            lambda remaining: self._stub.CreateNotification(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=True,
        )
        return CreateResult(convert.notification(response.notification), response.created)

    async def create_many(
        self, items: Sequence[NewNotification], *, timeout: float | None = None
    ) -> list[CreateResult]:
        """Create 1–1000 notifications, for any users, in one transaction: all, or (when
        any item is invalid) none; results in the order of ``items``.

        Each item without an ``idempotency_key`` gets a fresh UUID, reused by this call's
        retries, so a retried batch returns the notifications the first attempt made.
        An invalid item raises ``InvalidArgumentError`` whose field names it, e.g.
        ``notifications[3].title``.
        """
        request = admin_pb2.CreateNotificationsRequest(
            notifications=[_create_request(item) for item in items]
        )
        response = await self._call(
            lambda remaining: self._stub.CreateNotifications(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=True,
        )
        return [
            CreateResult(convert.notification(n), created)
            for n, created in zip(response.notifications, response.created, strict=True)
        ]

    async def broadcast(
        self,
        type: str,
        title: str,
        *,
        user_ids: Sequence[str | int] | None = None,
        all_users: bool = False,
        message: str = "",
        data: dict[str, Any] | None = None,
        priority: Priority | str = Priority.NORMAL,
        expires_at: datetime | None = None,
        ignore_mutes: bool = False,
        timeout: float | None = None,
    ) -> int:
        """One notification per recipient (``user_ids``, or every known user with
        ``all_users``); returns how many were created. Not retried (see the module doc).
        ``expires_at`` and ``ignore_mutes`` as in ``create``."""
        if not all_users and not user_ids:
            raise ValueError("give user_ids or set all_users")
        request = admin_pb2.BroadcastNotificationRequest(
            user_ids=[str(u) for u in user_ids or ()],
            all=all_users,
            type=type,
            title=title,
            message=message,
            data_json=convert.data_to_json(data),
            priority=convert.priority_to_pb(priority),
            ignore_mutes=ignore_mutes,
        )
        if expires_at is not None:
            request.expires_at.CopyFrom(convert.timestamp(expires_at))
        response = await self._call(
            lambda remaining: self._stub.BroadcastNotification(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=False,
        )
        return response.created

    async def stats(self, *, timeout: float | None = None) -> Stats:
        """Connection and delivery figures of the cluster."""
        response = await self._call(
            lambda remaining: self._stub.GetStats(
                admin_pb2.GetStatsRequest(), timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=True,
        )
        return convert.stats(response)

    async def status(
        self, user_id: str | int | None = None, *, timeout: float | None = None
    ) -> ConnectionStatus:
        """Whether ``user_id`` (default: the caller) has live sessions."""
        request = admin_pb2.GetConnectionStatusRequest(
            user_id="" if user_id is None else str(user_id)
        )
        response = await self._call(
            lambda remaining: self._stub.GetConnectionStatus(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=True,
        )
        return convert.connection_status(response)

    async def disconnect(self, user_id: str | int, *, timeout: float | None = None) -> int:
        """Close every live session of ``user_id`` (their streams end with ABORTED)."""
        request = admin_pb2.DisconnectUserRequest(user_id=str(user_id))
        response = await self._call(
            lambda remaining: self._stub.DisconnectUser(
                request, timeout=remaining, metadata=self._identity.metadata()
            ),
            timeout,
            retry=True,
        )
        return response.disconnected


def _create_request(item: NewNotification) -> admin_pb2.CreateNotificationRequest:
    return _request(
        item.user_id,
        item.type,
        item.title,
        item.message,
        item.data,
        item.priority,
        item.idempotency_key,
        item.expires_at,
        item.ignore_mutes,
    )


def _request(
    user_id: str | int,
    type: str,
    title: str,
    message: str,
    data: dict[str, Any] | None,
    priority: Priority | str,
    idempotency_key: str | None,
    expires_at: datetime | None,
    ignore_mutes: bool,
) -> admin_pb2.CreateNotificationRequest:
    """One create's request; without ``idempotency_key``, a fresh random one."""
    request = admin_pb2.CreateNotificationRequest(
        user_id=str(user_id),
        type=type,
        title=title,
        message=message,
        data_json=convert.data_to_json(data),
        priority=convert.priority_to_pb(priority),
        idempotency_key=idempotency_key or str(uuid.uuid4()),
        ignore_mutes=ignore_mutes,
    )
    if expires_at is not None:
        request.expires_at.CopyFrom(convert.timestamp(expires_at))
    return request
