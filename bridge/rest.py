"""The REST endpoints of docs/PROTOCOL.md §6: each one validated request → one gRPC call.

The caller's ``Authorization`` / ``X-Tidings-User`` headers travel as metadata; the
engine authorizes. gRPC failures become §6 errors through ``ApiError.from_rpc``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from typing import Any, Final, TypeVar

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from quart import Blueprint, Response, current_app, request
from quart_schema import (
    document_request,
    document_response,
    security_scheme,
    tag,
    validate_querystring,
)
from quart_schema.validation import (
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    DataSource,
    RequestSchemaValidationError,
)
from tidings.v1 import admin_pb2, notification_pb2, stream_pb2

from bridge import schemas
from bridge.jsonwire import (
    INT64_MAX,
    PRIORITY_VALUES,
    counts_object,
    notification_json,
    notification_object,
    stats_object,
)
from bridge.metadata import BadMetadata, http_metadata
from bridge.openapi import admin_only, is_admin_only, no_content, optional_body, text_response
from bridge.outcomes import ApiError
from bridge.responses import json_response
from bridge.state import bridge_state
from bridge.upstream import BROADCAST_TIMEOUT, CALL_TIMEOUT

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Body = TypeVar("Body", bound=BaseModel)
Handler = Callable[..., Awaitable[Response]]

api = Blueprint("api", __name__, url_prefix="/api/v1")
ops = Blueprint("ops", __name__)


async def _call(
    method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
    message: Req,
    timeout: float | None = None,
) -> Resp:
    """One engine call with the caller's credentials, answered within ``timeout``
    seconds (default ``CALL_TIMEOUT``); failures raise ``ApiError``."""
    try:
        metadata = http_metadata(request.headers)
    except BadMetadata as exc:
        raise ApiError(401, "unauthorized", exc.message) from None
    try:
        return await method(message, metadata=metadata, timeout=timeout or CALL_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        raise ApiError.from_rpc(exc) from None


async def caller_refused() -> ApiError | None:
    """The 401 / 403 the engine gives this request's caller, or None if it admits them.

    For a request the bridge refuses itself (bad body or query, unknown id), so that
    credentials are judged first, as the engine does. The engine alone knows who may
    call: ``WhoAmI`` asks it, for the admin surface with ``require_admin``.
    """
    admin = is_admin_only(current_app.view_functions.get(request.endpoint or ""))
    try:
        await _call(
            bridge_state().upstream.stream.WhoAmI, stream_pb2.WhoAmIRequest(require_admin=admin)
        )
    except ApiError as exc:
        return exc if exc.status in (401, 403) else None
    return None


def _data_json(data: dict[str, object] | None) -> str:
    if not data:
        return "{}"
    try:
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError:
        pass  # integers beyond 64 bits (or deep nesting): the standard library writes those
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ApiError.invalid("data", "data: nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise ApiError.invalid("data", f"data: {exc}") from None


def _priority(name: str | None) -> notification_pb2.Priority.ValueType:
    return PRIORITY_VALUES[name or "normal"]


def _timestamp(moment: datetime | None) -> Timestamp | None:
    """A validated (aware) instant as a Timestamp; None stays unset."""
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _create_request(
    data: schemas.CreateNotification, key: str | None
) -> admin_pb2.CreateNotificationRequest:
    """One validated create body as the engine's message (``data`` as JSON text)."""
    return admin_pb2.CreateNotificationRequest(
        user_id=data.user_id,
        type=data.type,
        title=data.title,
        message=data.message or "",
        data_json=_data_json(data.data),
        priority=_priority(data.priority),
        idempotency_key=key or "",
        expires_at=_timestamp(data.expires_at),
        ignore_mutes=data.ignore_mutes,
    )


def _notification_id(text: str) -> int:
    """A path's notification id; anything but a positive int64 names no notification."""
    if not (text.isascii() and text.isdigit()):
        raise ApiError.not_found(f"notification {text[:32]!r} not found")
    nid = int(text)
    if not 0 < nid <= INT64_MAX:
        raise ApiError.not_found(f"notification {nid} not found")
    return nid


async def _optional_body(model: type[Body]) -> Body:
    """The request's JSON body as ``model``, or its defaults when there is no body."""
    if not await request.get_data(cache=True):
        return model()
    data = await request.get_json(force=True)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid_item(exc) from None


def validate_request(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """``quart_schema.validate_request`` for a JSON body, validated by ``model`` itself.

    The same contract: the body (``request.get_json``) as ``model`` in ``data``, or
    ``RequestSchemaValidationError`` (a 422, ``bridge.app``), and the same OpenAPI
    document. quart_schema builds a new pydantic ``TypeAdapter`` for every request
    (~35 µs each time); the model's own validator is built once.
    """

    def decorator(func: Handler) -> Handler:
        setattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.JSON))

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            body = await request.get_json()
            try:
                data = model.model_validate(body)
            except (TypeError, ValueError) as exc:  # pydantic's ValidationError included
                raise RequestSchemaValidationError(exc) from None
            return await func(*args, data=data, **kwargs)

        return wrapper

    return decorator


# --- producers ---------------------------------------------------------------------------


@api.post("/notifications")
@admin_only
@tag(["notifications"])
@validate_request(schemas.CreateNotification)
@document_response(schemas.Notification, 201)
@document_response(schemas.Error, 422)
async def create_notification(data: schemas.CreateNotification) -> Response:
    """Create one notification (admin): 201 with it. A retry with the same idempotency key
    answers the first notification, 201 again, with ``Idempotent-Replayed: true``."""
    message = create_message(data, request.headers.get("Idempotency-Key"))
    answer = await _call(bridge_state().upstream.admin.CreateNotification, message)
    body, headers = created_answer(answer)
    return json_response(body, 201, {k.decode(): v.decode() for k, v in headers})


def create_message(
    data: schemas.CreateNotification, header_key: str | None
) -> admin_pb2.CreateNotificationRequest:
    """The engine's message for a validated create body and its ``Idempotency-Key``
    header (the body's key wins); ``ApiError`` (422) for a key or ``data`` refused."""
    key = data.idempotency_key
    if key is None and header_key:
        if len(header_key) > 255:
            raise ApiError.invalid("idempotency_key", "Idempotency-Key: at most 255 characters")
        key = header_key
    return _create_request(data, key)


#: The header of a create answered with an earlier notification (same idempotency key).
REPLAYED: Final = ((b"idempotent-replayed", b"true"),)


def created_answer(
    answer: admin_pb2.CreateNotificationResponse,
) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """The 201's JSON body and extra headers for the engine's create answer."""
    return notification_json(answer.notification), () if answer.created else REPLAYED


@api.post("/notifications/batch")
@admin_only
@tag(["notifications"])
@document_request(schemas.CreateNotifications)
@document_response(schemas.CreatedBatch, 201)
@document_response(schemas.Error, 422)
async def create_notifications() -> Response:
    """Create 1–1000 notifications (admin) in one transaction, all or none; see the body."""
    try:
        data = schemas.CreateNotifications.model_validate(await request.get_json())
    except ValidationError as exc:
        raise _invalid_item(exc) from None
    items = []
    for index, item in enumerate(data.notifications):
        try:
            items.append(_create_request(item, item.idempotency_key))
        except ApiError as exc:
            raise ApiError.invalid(f"notifications[{index}].data", exc.message) from None
    message = admin_pb2.CreateNotificationsRequest(notifications=items)
    answer = await _call(bridge_state().upstream.admin.CreateNotifications, message)
    body = {
        "notifications": [notification_object(n) for n in answer.notifications],
        "created": list(answer.created),
    }
    replayed = {} if any(answer.created) else {"Idempotent-Replayed": "true"}
    return json_response(body, 201, replayed)


def _invalid_item(error: ValidationError) -> ApiError:
    """A 422 naming the path at fault the way the engine does: ``notifications[3].title``."""
    first = error.errors()[0]
    loc = first.get("loc", ())
    if not loc:
        return ApiError.invalid(None, "the body must be a JSON object")
    path = str(loc[0])
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return ApiError.invalid(path, f"{path}: {first.get('msg', 'is invalid')}")


@api.post("/notifications/broadcast")
@admin_only
@tag(["notifications"])
@validate_request(schemas.Broadcast)
@document_response(schemas.BroadcastCreated, 201)
@document_response(schemas.Error, 422)
async def broadcast(data: schemas.Broadcast) -> Response:
    """One notification per recipient (admin): ``user_ids``, or ``all: true``."""
    if not data.all and not data.user_ids:
        raise ApiError.invalid("user_ids", "user_ids: give at least one user id, or set all")
    message = admin_pb2.BroadcastNotificationRequest(
        user_ids=[] if data.all else data.user_ids,
        all=data.all,
        type=data.type,
        title=data.title,
        message=data.message or "",
        data_json=_data_json(data.data),
        priority=_priority(data.priority),
        expires_at=_timestamp(data.expires_at),
        ignore_mutes=data.ignore_mutes,
    )
    answer = await _call(
        bridge_state().upstream.admin.BroadcastNotification, message, BROADCAST_TIMEOUT
    )
    return json_response({"created": answer.created}, 201)


# --- the caller's inbox ---------------------------------------------------------------------


@api.get("/notifications")
@tag(["inbox"])
@validate_querystring(schemas.ListQuery)
@document_response(schemas.NotificationPage)
@document_response(schemas.Error, 422)
async def list_notifications(query_args: schemas.ListQuery) -> Response:
    """The caller's inbox, newest first, filtered (see the query); ``before_id`` pages."""
    q = query_args
    message = stream_pb2.ListNotificationsRequest(
        unread_only=q.unread_only,
        # The engine caps the page; this only keeps the number inside int32.
        limit=min(q.limit or 0, 2**31 - 1),
        before_id=q.before_id or 0,
        types=q.type or (),
        read=q.read,
        seen=q.seen,
        archived=q.archived,
        priorities=[PRIORITY_VALUES[p] for p in q.priority or ()],
        created_after=_timestamp(q.created_after),
        created_before=_timestamp(q.created_before),
    )
    answer = await _call(bridge_state().upstream.stream.ListNotifications, message)
    return json_response(
        {
            "notifications": [notification_object(n) for n in answer.notifications],
            "has_more": answer.has_more,
        }
    )


@api.get("/notifications/unread_count")
@tag(["inbox"])
@document_response(schemas.UnreadCount)
async def unread_count() -> Response:
    """How many of the caller's notifications are unread."""
    answer = await _call(
        bridge_state().upstream.stream.GetUnreadCount, stream_pb2.GetUnreadCountRequest()
    )
    return json_response({"unread": answer.unread})


@api.post("/notifications/<notification_id>/read")
@tag(["inbox"])
@document_response(schemas.Notification)
@document_response(schemas.Error, 404)
async def mark_read(notification_id: str) -> Response:
    """Mark one of the caller's notifications read; every live session is told."""
    nid = _notification_id(notification_id)
    answer = await _call(
        bridge_state().upstream.stream.MarkRead, stream_pb2.MarkReadRequest(notification_id=nid)
    )
    return json_response(notification_json(answer.notification))


@api.post("/notifications/seen")
@optional_body
@tag(["inbox"])
@document_request(schemas.MarkSeen)
@document_response(schemas.SeenMarked)
@document_response(schemas.Error, 422)
async def mark_seen() -> Response:
    """Mark the caller's notifications seen up to ``up_to_id`` (absent or 0: the newest);
    every live session of the caller gets one ``notifications_seen``."""
    data = await _optional_body(schemas.MarkSeen)
    message = stream_pb2.MarkSeenRequest(up_to_id=data.up_to_id or 0)
    answer = await _call(bridge_state().upstream.stream.MarkSeen, message)
    return json_response({"up_to_id": answer.up_to_id, "seen": answer.seen})


@api.post("/notifications/read_all")
@optional_body
@tag(["inbox"])
@document_request(schemas.MarkAllRead)
@document_response(schemas.ReadAllMarked)
@document_response(schemas.Error, 422)
async def mark_all_read() -> Response:
    """Mark the caller's unread notifications read (of one type, up to an id), archived
    ones included; every live session gets one ``notifications_marked_read``."""
    data = await _optional_body(schemas.MarkAllRead)
    message = stream_pb2.MarkAllReadRequest(
        notification_type=data.notification_type or "", up_to_id=data.up_to_id or 0
    )
    answer = await _call(bridge_state().upstream.stream.MarkAllRead, message)
    return json_response({"up_to_id": answer.up_to_id, "read": answer.read})


@api.post("/notifications/<notification_id>/archive")
@tag(["inbox"])
@document_response(schemas.Notification)
@document_response(schemas.Error, 404)
async def archive(notification_id: str) -> Response:
    """Archive one of the caller's notifications (again: no change); it leaves the default
    list and the counts. Every live session is told."""
    nid = _notification_id(notification_id)
    message = stream_pb2.ArchiveNotificationRequest(notification_id=nid)
    answer = await _call(bridge_state().upstream.stream.ArchiveNotification, message)
    return json_response(notification_json(answer.notification))


@api.post("/notifications/<notification_id>/unarchive")
@tag(["inbox"])
@document_response(schemas.Notification)
@document_response(schemas.Error, 404)
async def unarchive(notification_id: str) -> Response:
    """Bring one of the caller's archived notifications back; every live session is told."""
    nid = _notification_id(notification_id)
    message = stream_pb2.UnarchiveNotificationRequest(notification_id=nid)
    answer = await _call(bridge_state().upstream.stream.UnarchiveNotification, message)
    return json_response(notification_json(answer.notification))


@api.delete("/notifications/<notification_id>")
@no_content
@tag(["inbox"])
@document_response(schemas.Error, 404)
async def delete(notification_id: str) -> Response:
    """Delete one of the caller's notifications for good (lists, counts, replay, resume);
    every live session is told."""
    nid = _notification_id(notification_id)
    message = stream_pb2.DeleteNotificationRequest(notification_id=nid)
    await _call(bridge_state().upstream.stream.DeleteNotification, message)
    return Response(b"", status=204)


@api.get("/notifications/counts")
@tag(["inbox"])
@document_response(schemas.Counts)
async def counts() -> Response:
    """The caller's unread and unseen figures, in total and per type."""
    answer = await _call(bridge_state().upstream.stream.GetCounts, stream_pb2.GetCountsRequest())
    return json_response(counts_object(answer))


@api.get("/preferences")
@tag(["inbox"])
@document_response(schemas.Preferences)
async def preferences() -> Response:
    """The caller's preferences: the muted types, sorted."""
    answer = await _call(
        bridge_state().upstream.stream.GetPreferences, stream_pb2.GetPreferencesRequest()
    )
    return json_response({"muted_types": list(answer.muted_types)})


@api.put("/preferences")
@tag(["inbox"])
@validate_request(schemas.Preferences)
@document_response(schemas.Preferences)
@document_response(schemas.Error, 422)
async def update_preferences(data: schemas.Preferences) -> Response:
    """Replace the caller's muted types; every live session, on every node, applies them at
    once and gets ``preferences_updated``."""
    message = stream_pb2.UpdatePreferencesRequest(muted_types=data.muted_types)
    answer = await _call(bridge_state().upstream.stream.UpdatePreferences, message)
    return json_response({"muted_types": list(answer.muted_types)})


# --- operators -----------------------------------------------------------------------------


@api.get("/ws/notifications/stats")
@admin_only
@tag(["operators"])
@document_response(schemas.Stats)
async def stats() -> Response:
    """Connection and delivery figures for this node and the cluster (admin)."""
    answer = await _call(bridge_state().upstream.admin.GetStats, admin_pb2.GetStatsRequest())
    return json_response(stats_object(answer))


@api.get("/ws/notifications/status")
@tag(["operators"])
@validate_querystring(schemas.StatusQuery)
@document_response(schemas.ConnectionStatus)
@document_response(schemas.Error, 403)
async def connection_status(query_args: schemas.StatusQuery) -> Response:
    """Whether a user is connected: the caller, or ``?user_id=`` (admins)."""
    message = admin_pb2.GetConnectionStatusRequest(user_id=query_args.user_id or "")
    answer = await _call(bridge_state().upstream.admin.GetConnectionStatus, message)
    return json_response(
        {
            "user_id": answer.user_id,
            "connected": answer.connected,
            "connection_count": answer.connection_count,
        }
    )


@api.post("/ws/notifications/disconnect")
@admin_only
@tag(["operators"])
@validate_request(schemas.Disconnect)
@document_response(schemas.Disconnected)
async def disconnect(data: schemas.Disconnect) -> Response:
    """Close every live session of a user (admin); they end with close code 4001."""
    message = admin_pb2.DisconnectUserRequest(user_id=data.user_id)
    answer = await _call(bridge_state().upstream.admin.DisconnectUser, message)
    return json_response({"disconnected": answer.disconnected})


# --- liveness and metrics -----------------------------------------------------------------


@ops.get("/healthz")
@tag(["operations"])
@security_scheme([])
@document_response(schemas.Health)
@document_response(schemas.Error, 503)
async def healthz() -> Response:
    """200 while the engine's gRPC health service reports SERVING (store included)."""
    if await bridge_state().upstream.serving():
        return json_response({"status": "ok"})
    return json_response(
        {
            "status": "unavailable",
            "error": {"code": "unavailable", "message": "the notification engine is not serving"},
        },
        503,
    )


@ops.get("/metrics")
@tag(["operations"])
@security_scheme([])
@text_response(CONTENT_TYPE_LATEST)
async def metrics() -> Response:
    """Prometheus text of the bridge's registry (the process's: in role all, the engine's too)."""
    return Response(
        generate_latest(bridge_state().metrics.registry), content_type=CONTENT_TYPE_LATEST
    )
