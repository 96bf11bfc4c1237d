"""The NotificationAdminService servicer: producers and operators."""

from __future__ import annotations

from tidings.v1 import admin_pb2

from server.auth import Authenticator
from server.engine import Engine
from server.engine.errors import InvalidArgument, TidingsError
from server.engine.models import (
    NewNotification,
    batch_item,
    check_batch_size,
    check_user_id,
)
from server.rpc import convert
from server.rpc.errors import abort
from server.rpc.stream import Context, caller


class AdminServicer:
    """Translates tidings.v1.NotificationAdminService calls onto the engine."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._auth = authenticator

    async def CreateNotification(
        self, request: admin_pb2.CreateNotificationRequest, context: Context
    ) -> admin_pb2.CreateNotificationResponse:
        try:
            (await caller(self._auth, context)).require_admin()
            item = _new_notification(request)
            outcome = await self._engine.create(item)
        except TidingsError as exc:
            await abort(context, exc)
        return admin_pb2.CreateNotificationResponse(
            notification=convert.notification_to_pb(outcome.notification), created=outcome.created
        )

    async def CreateNotifications(
        self, request: admin_pb2.CreateNotificationsRequest, context: Context
    ) -> admin_pb2.CreateNotificationsResponse:
        try:
            (await caller(self._auth, context)).require_admin()
            check_batch_size(len(request.notifications))
            items = []
            for index, one in enumerate(request.notifications):
                with batch_item(index):
                    items.append(_new_notification(one))
            outcomes = await self._engine.create_many(items)
        except TidingsError as exc:
            await abort(context, exc)
        return admin_pb2.CreateNotificationsResponse(
            notifications=[convert.notification_to_pb(o.notification) for o in outcomes],
            created=[o.created for o in outcomes],
        )

    async def BroadcastNotification(
        self, request: admin_pb2.BroadcastNotificationRequest, context: Context
    ) -> admin_pb2.BroadcastNotificationResponse:
        try:
            (await caller(self._auth, context)).require_admin()
            content = convert.content_from_pb(request)
            if not request.all and not request.user_ids:
                raise InvalidArgument("user_ids", "give user_ids or set all")
            created = await self._engine.broadcast(
                content, None if request.all else list(request.user_ids)
            )
        except TidingsError as exc:
            await abort(context, exc)
        return admin_pb2.BroadcastNotificationResponse(created=created)

    async def GetStats(
        self, request: admin_pb2.GetStatsRequest, context: Context
    ) -> admin_pb2.GetStatsResponse:
        try:
            (await caller(self._auth, context)).require_admin()
            stats = await self._engine.stats()
        except TidingsError as exc:
            await abort(context, exc)
        return convert.stats_to_pb(stats)

    async def GetConnectionStatus(
        self, request: admin_pb2.GetConnectionStatusRequest, context: Context
    ) -> admin_pb2.GetConnectionStatusResponse:
        try:
            principal = await caller(self._auth, context)
            user_id = check_user_id(request.user_id) if request.user_id else principal.user_id
            principal.require_self_or_admin(user_id)
            status = await self._engine.status(user_id)
        except TidingsError as exc:
            await abort(context, exc)
        return admin_pb2.GetConnectionStatusResponse(
            user_id=status.user_id,
            connected=status.connected,
            connection_count=status.connection_count,
        )

    async def DisconnectUser(
        self, request: admin_pb2.DisconnectUserRequest, context: Context
    ) -> admin_pb2.DisconnectUserResponse:
        try:
            (await caller(self._auth, context)).require_admin()
            disconnected = await self._engine.disconnect(check_user_id(request.user_id))
        except TidingsError as exc:
            await abort(context, exc)
        return admin_pb2.DisconnectUserResponse(disconnected=disconnected)


def _new_notification(request: admin_pb2.CreateNotificationRequest) -> NewNotification:
    return NewNotification(
        user_id=request.user_id,
        content=convert.content_from_pb(request),
        idempotency_key=request.idempotency_key or None,
    )
