"""The NotificationStream servicer: live sessions and the user's inbox calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import grpc
from tidings.v1 import stream_pb2

from server.auth import Authenticator, Principal, bearer_token
from server.engine import Engine, Session
from server.engine.errors import InvalidArgument, TidingsError, Unauthenticated
from server.engine.events import Closed, CloseReason, Command, Expiry, Refresh
from server.rpc import convert
from server.rpc.errors import ERROR_CODE_KEY, abort

SINCE_KEY = "tidings-since"
TYPES_KEY = "tidings-types"
USER_KEY = "x-tidings-user"

Context = grpc.aio.ServicerContext[Any, Any]

#: How a session the engine closed ends on the wire.
CLOSE_STATUS = {
    CloseReason.SLOW: grpc.StatusCode.RESOURCE_EXHAUSTED,
    CloseReason.DISCONNECTED: grpc.StatusCode.ABORTED,
    CloseReason.SHUTDOWN: grpc.StatusCode.UNAVAILABLE,
    CloseReason.TOKEN_EXPIRED: grpc.StatusCode.UNAUTHENTICATED,
    CloseReason.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
}
#: The ``tidings-error-code`` of such an end, where the status alone does not say it.
CLOSE_ERROR_CODE = {
    CloseReason.TOKEN_EXPIRED: "token_expired",
    CloseReason.UNAUTHORIZED: Unauthenticated.code,
}


def metadata(context: Context) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


async def caller(authenticator: Authenticator, context: Context) -> Principal:
    """The authenticated caller of this RPC (raises ``Unauthenticated``)."""
    return await principal(authenticator, metadata(context))


async def principal(authenticator: Authenticator, md: Mapping[str, str]) -> Principal:
    """The caller that metadata ``md`` names (raises ``Unauthenticated``)."""
    return await authenticator.authenticate(bearer_token(md.get("authorization")), md.get(USER_KEY))


async def open_session(
    engine: Engine, authenticator: Authenticator, md: Mapping[str, str]
) -> Session:
    """A live session for the caller of a Connect call (or a relayed one) with ``md``."""
    user = await principal(authenticator, md)
    return await engine.connect(
        user.user_id,
        since=_since(md.get(SINCE_KEY)),
        types=_types(md.get(TYPES_KEY)),
        expiry=_expiry(user),
    )


async def command(authenticator: Authenticator, request: stream_pb2.ConnectRequest) -> Command:
    """The engine command for a session's request; a refresh's token is verified here."""
    if request.WhichOneof("kind") != "refresh":
        return convert.command_from_pb(request)
    token = request.refresh.token
    if not token:
        return Refresh(error="refresh: a token is required")
    try:
        user = await authenticator.authenticate(token)
    except Unauthenticated as exc:
        return Refresh(error=exc.message)
    return Refresh(user_id=user.user_id, expiry=_expiry(user))


def _expiry(user: Principal) -> Expiry | None:
    if user.expires_at is None:
        return None
    return Expiry(user.expires_at, user.issued_at)


def _since(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise InvalidArgument("since", "must be a non-negative integer")
    return int(value)


def _types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


class StreamServicer:
    """Translates tidings.v1.NotificationStream calls onto the engine."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._auth = authenticator

    async def Connect(
        self, requests: AsyncIterable[stream_pb2.ConnectRequest], context: Context
    ) -> AsyncIterator[stream_pb2.ConnectResponse | bytes]:
        try:
            session = await open_session(self._engine, self._auth, metadata(context))
        except TidingsError as exc:
            await abort(context, exc)
        reader = asyncio.create_task(self._read(requests, session))
        try:
            async for event in session:
                if isinstance(event, Closed):
                    status = CLOSE_STATUS.get(event.reason)
                    if status is not None:
                        code = CLOSE_ERROR_CODE.get(event.reason)
                        trailers = ((ERROR_CODE_KEY, code),) if code else ()
                        await context.abort(status, event.message, trailing_metadata=trailers)
                    return
                yield convert.event_to_pb(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            session.close(CloseReason.CLIENT_GONE)

    async def _read(
        self, requests: AsyncIterable[stream_pb2.ConnectRequest], session: Session
    ) -> None:
        async for request in requests:
            await session.handle(await command(self._auth, request))

    async def ListNotifications(
        self, request: stream_pb2.ListNotificationsRequest, context: Context
    ) -> stream_pb2.ListNotificationsResponse:
        try:
            principal = await caller(self._auth, context)
            if request.limit < 0:
                raise InvalidArgument("limit", "must be at least 1")
            page = await self._engine.list_notifications(
                principal.user_id,
                unread_only=request.unread_only,
                limit=request.limit or None,
                before_id=request.before_id or None,
            )
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.ListNotificationsResponse(
            notifications=[convert.notification_to_pb(n) for n in page.notifications],
            has_more=page.has_more,
        )

    async def MarkRead(
        self, request: stream_pb2.MarkReadRequest, context: Context
    ) -> stream_pb2.MarkReadResponse:
        try:
            principal = await caller(self._auth, context)
            notification = await self._engine.mark_read(principal.user_id, request.notification_id)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.MarkReadResponse(notification=convert.notification_to_pb(notification))

    async def GetUnreadCount(
        self, request: stream_pb2.GetUnreadCountRequest, context: Context
    ) -> stream_pb2.GetUnreadCountResponse:
        try:
            principal = await caller(self._auth, context)
            unread = await self._engine.unread_count(principal.user_id)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.GetUnreadCountResponse(unread=unread)
