"""The NotificationStream servicer: live sessions and the user's inbox calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import grpc
from tidings import metadata as keys
from tidings.v1 import stream_pb2

from server.auth import Authenticator, Principal, bearer_token
from server.engine import Engine, Session
from server.engine.errors import InvalidArgument, TidingsError, Unauthenticated
from server.engine.events import Closed, CloseReason, Command, Delivery, Expiry, Refresh
from server.engine.filters import TypeFilter
from server.engine.models import TYPE_MAX, check_text
from server.rpc import convert
from server.rpc.errors import ERROR_CODE_KEY, Undecodable, abort
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

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

#: The most characters of ``ConnectParams.client_name`` and ``client_version``.
CLIENT_LABEL_MAX = 64


def metadata(context: Context) -> dict[str, str]:
    """The call's text metadata (binary ``-bin`` entries left out)."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def connect_params(context: Context) -> bytes | None:
    """The call's ``tidings-connect-params-bin`` value, if it sent one."""
    for key, value in context.invocation_metadata() or ():
        if key == keys.CONNECT_PARAMS and isinstance(value, bytes):
            return value
    return None


async def caller(authenticator: Authenticator, context: Context) -> Principal:
    """The authenticated caller of this RPC (raises ``Unauthenticated``)."""
    return await principal(authenticator, metadata(context))


async def principal(authenticator: Authenticator, md: Mapping[str, str]) -> Principal:
    """The caller that metadata ``md`` names (raises ``Unauthenticated``)."""
    return await authenticator.authenticate(
        bearer_token(md.get(keys.AUTHORIZATION)), md.get(keys.USER)
    )


async def open_session(
    engine: Engine,
    authenticator: Authenticator,
    md: Mapping[str, str],
    params: stream_pb2.ConnectParams | bytes | None = None,
) -> Session:
    """A live session for the caller of a Connect call (or a relayed one) with ``md``.

    ``params`` are the typed connect parameters (or their serialized form); without
    them, the textual ``tidings-since`` and ``tidings-types`` of ``md`` say the same.
    Credentials are checked first.
    """
    user = await principal(authenticator, md)
    try:
        if params is None:
            params = keys.params_from_text(md.get(keys.SINCE), md.get(keys.TYPES))
        elif isinstance(params, bytes):
            params = keys.decode_params(params)
    except keys.BadParams as exc:
        raise InvalidArgument(exc.field, exc.message) from None
    for name in ("client_name", "client_version"):
        label = getattr(params, name)
        if len(label) > CLIENT_LABEL_MAX or not label.isprintable():
            raise InvalidArgument(name, f"must be at most {CLIENT_LABEL_MAX} printable characters")
    session = await engine.connect(
        user.user_id,
        since=params.since if params.HasField("since") else None,
        type_filter=type_filter(params.filter) if params.HasField("filter") else None,
        expiry=_expiry(user),
    )
    if params.client_name:
        log.debug(
            "session %s: %s %s", session.connection_id, params.client_name, params.client_version
        )
    return session


def _refusal(reader: asyncio.Task[InvalidArgument | None]) -> InvalidArgument | None:
    """Why the reading side ended the session, if it did."""
    if reader.done() and not reader.cancelled() and reader.exception() is None:
        return reader.result()
    return None


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


def type_filter(pb: stream_pb2.TypeFilter) -> TypeFilter:
    """The engine's filter for a ``tidings.v1.TypeFilter`` (raises ``InvalidArgument``)."""
    if pb.mode == stream_pb2.FILTER_MODE_ONLY and not pb.excluded_types:
        return TypeFilter(only=frozenset(pb.notification_types))
    if pb.mode == stream_pb2.FILTER_MODE_ALL_EXCEPT and not pb.notification_types:
        return TypeFilter(excluded=frozenset(pb.excluded_types))
    if pb.mode == stream_pb2.FILTER_MODE_UNSPECIFIED and not (
        pb.notification_types or pb.excluded_types
    ):
        return TypeFilter.everything()
    raise InvalidArgument(
        "filter",
        "notification_types go with FILTER_MODE_ONLY, excluded_types with "
        "FILTER_MODE_ALL_EXCEPT, neither with FILTER_MODE_UNSPECIFIED",
    )


class StreamServicer:
    """Translates tidings.v1.NotificationStream calls onto the engine."""

    def __init__(self, engine: Engine, authenticator: Authenticator) -> None:
        self._engine = engine
        self._auth = authenticator

    async def Connect(
        self, requests: AsyncIterable[stream_pb2.ConnectRequest | Undecodable], context: Context
    ) -> AsyncIterator[bytes]:
        try:
            session = await open_session(
                self._engine, self._auth, metadata(context), connect_params(context)
            )
        except TidingsError as exc:
            await abort(context, exc)
        reader = asyncio.create_task(self._read(context, session))
        encoded = convert.delivery_encoded
        try:
            # One event at a time, as ``async for event in session`` takes them, without
            # a coroutine per event: wait only when none is left. Messages go out as
            # bytes (the method has no response serializer).
            while True:
                event = session.take()
                if event is None:
                    await session.wait()
                elif type(event) is Delivery:
                    yield encoded(event.envelope)
                elif type(event) is Closed:
                    if (refused := _refusal(reader)) is not None:
                        await abort(context, refused)
                    status = CLOSE_STATUS.get(event.reason)
                    if status is not None:
                        code = CLOSE_ERROR_CODE.get(event.reason)
                        trailers = ((ERROR_CODE_KEY, code),) if code else ()
                        await context.abort(status, event.message, trailing_metadata=trailers)
                    return
                else:
                    yield convert.event_bytes(event)
        finally:
            await cancel_and_wait(reader)
            session.close(CloseReason.CLIENT_GONE)

    async def _read(self, context: Context, session: Session) -> InvalidArgument | None:
        """Pass commands on; a message that cannot be decoded ends the session (its error).

        ``context.read()`` rather than the request iterator: the same messages, without
        an async generator held by every idle session.
        """
        while (request := await context.read()) is not grpc.aio.EOF:
            if isinstance(request, Undecodable):
                session.close(CloseReason.CLIENT_GONE, "undecodable message")
                return request.error()
            await session.handle(await command(self._auth, request))
        return None

    async def ListNotifications(
        self, request: stream_pb2.ListNotificationsRequest, context: Context
    ) -> stream_pb2.ListNotificationsResponse:
        try:
            principal = await caller(self._auth, context)
            query = convert.query_from_pb(request)
            if query is None:  # unread_only with read=true: nothing can match
                return stream_pb2.ListNotificationsResponse()
            page = await self._engine.list_notifications(principal.user_id, query)
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

    async def WhoAmI(
        self, request: stream_pb2.WhoAmIRequest, context: Context
    ) -> stream_pb2.WhoAmIResponse:
        try:
            principal = await caller(self._auth, context)
            if request.require_admin:
                principal.require_admin()
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.WhoAmIResponse(user_id=principal.user_id, admin=principal.is_admin)

    async def GetUnreadCount(
        self, request: stream_pb2.GetUnreadCountRequest, context: Context
    ) -> stream_pb2.GetUnreadCountResponse:
        try:
            principal = await caller(self._auth, context)
            unread = await self._engine.unread_count(principal.user_id)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.GetUnreadCountResponse(unread=unread)

    async def MarkSeen(
        self, request: stream_pb2.MarkSeenRequest, context: Context
    ) -> stream_pb2.MarkSeenResponse:
        try:
            principal = await caller(self._auth, context)
            up_to = _up_to(request.up_to_id)
            mark = await self._engine.mark_seen(principal.user_id, up_to)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.MarkSeenResponse(up_to_id=mark.up_to_id, seen=mark.changed)

    async def MarkAllRead(
        self, request: stream_pb2.MarkAllReadRequest, context: Context
    ) -> stream_pb2.MarkAllReadResponse:
        try:
            principal = await caller(self._auth, context)
            kind = request.notification_type or None
            if kind is not None:
                check_text("notification_type", kind, TYPE_MAX, required=True)
            up_to = _up_to(request.up_to_id)
            mark = await self._engine.mark_all_read(principal.user_id, kind, up_to)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.MarkAllReadResponse(up_to_id=mark.up_to_id, read=mark.changed)

    async def ArchiveNotification(
        self, request: stream_pb2.ArchiveNotificationRequest, context: Context
    ) -> stream_pb2.ArchiveNotificationResponse:
        try:
            principal = await caller(self._auth, context)
            nid = _notification_id(request.notification_id)
            notification = await self._engine.archive(principal.user_id, nid)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.ArchiveNotificationResponse(
            notification=convert.notification_to_pb(notification)
        )

    async def UnarchiveNotification(
        self, request: stream_pb2.UnarchiveNotificationRequest, context: Context
    ) -> stream_pb2.UnarchiveNotificationResponse:
        try:
            principal = await caller(self._auth, context)
            nid = _notification_id(request.notification_id)
            notification = await self._engine.unarchive(principal.user_id, nid)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.UnarchiveNotificationResponse(
            notification=convert.notification_to_pb(notification)
        )

    async def DeleteNotification(
        self, request: stream_pb2.DeleteNotificationRequest, context: Context
    ) -> stream_pb2.DeleteNotificationResponse:
        try:
            principal = await caller(self._auth, context)
            nid = _notification_id(request.notification_id)
            await self._engine.delete(principal.user_id, nid)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.DeleteNotificationResponse()

    async def GetCounts(
        self, request: stream_pb2.GetCountsRequest, context: Context
    ) -> stream_pb2.GetCountsResponse:
        try:
            principal = await caller(self._auth, context)
            counts = await self._engine.counts(principal.user_id)
        except TidingsError as exc:
            await abort(context, exc)
        return convert.counts_to_pb(counts)

    async def GetPreferences(
        self, request: stream_pb2.GetPreferencesRequest, context: Context
    ) -> stream_pb2.GetPreferencesResponse:
        try:
            principal = await caller(self._auth, context)
            preferences = await self._engine.preferences(principal.user_id)
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.GetPreferencesResponse(muted_types=preferences.muted_types)

    async def UpdatePreferences(
        self, request: stream_pb2.UpdatePreferencesRequest, context: Context
    ) -> stream_pb2.UpdatePreferencesResponse:
        try:
            principal = await caller(self._auth, context)
            preferences = await self._engine.update_preferences(
                principal.user_id, list(request.muted_types)
            )
        except TidingsError as exc:
            await abort(context, exc)
        return stream_pb2.UpdatePreferencesResponse(muted_types=preferences.muted_types)


def _up_to(value: int) -> int | None:
    """A request's ``up_to_id``: 0 is the newest (None to the engine)."""
    if value < 0:
        raise InvalidArgument("up_to_id", "must not be negative (0: the newest)")
    return value or None


def _notification_id(value: int) -> int:
    """A request's ``notification_id``: positive, as for MarkRead."""
    if value <= 0:
        raise InvalidArgument("notification_id", "must be a positive integer")
    return value
