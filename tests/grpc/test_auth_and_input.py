"""Authentication, authorization and bad input over gRPC: refused cleanly, nothing changed."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import grpc
import jwt
import pytest
from tidings.v1 import admin_pb2, stream_pb2

from tests.auth_tokens import token, unsigned_token
from tests.grpc.conftest import ADMIN, Node, auth
from tests.harness import TEST_SECRET

pytestmark = pytest.mark.timeout(60)

BAD_TOKENS = {
    "missing": None,
    "expired": token("u", ttl=-60),
    "wrong key": token("u", secret="another-secret-that-is-also-32-bytes-long"),
    "alg none": unsigned_token("u"),
    "not a jwt": "hello",
    "no exp": jwt.encode({"sub": "u"}, TEST_SECRET, algorithm="HS256"),
    # RFC 7519: a NumericDate is a JSON number; a string that looks like one is refused.
    "exp a string": jwt.encode(
        {"sub": "u", "exp": str(int(time.time()) + 3600)}, TEST_SECRET, algorithm="HS256"
    ),
}


def md(tok: str | None) -> tuple[tuple[str, str], ...]:
    return auth(tok) if tok else ()


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_tokens_are_refused_everywhere(node: Node, kind: str) -> None:
    tok = BAD_TOKENS[kind]
    stream = node.users.Connect(metadata=md(tok))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream.read()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.users.GetUnreadCount(stream_pb2.GetUnreadCountRequest(), metadata=md(tok))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=md(tok))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_user_cannot_read_or_mark_another_users_notification(node: Node) -> None:
    theirs = await node.create("owner")
    intruder = auth(token("intruder"))
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await node.users.MarkRead(
            stream_pb2.MarkReadRequest(notification_id=theirs.id), metadata=intruder
        )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await node.users.MarkRead(
            stream_pb2.MarkReadRequest(notification_id=theirs.id + 1000), metadata=intruder
        )
    assert other.value.code() == missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert (other.value.details() or "").replace(str(theirs.id), "#") == (
        missing.value.details() or ""
    ).replace(str(theirs.id + 1000), "#")
    page = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(), metadata=intruder
    )
    assert list(page.notifications) == []
    owner = await node.users.GetUnreadCount(
        stream_pb2.GetUnreadCountRequest(), metadata=auth(token("owner"))
    )
    assert owner.unread == 1, "the intruder changed nothing"


async def test_non_admins_cannot_use_the_operator_service(node: Node) -> None:
    user = auth(token("plain"))
    calls: list[Awaitable[object]] = [
        node.admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id="x", type="t", title="t"), metadata=user
        ),
        node.admin.BroadcastNotification(
            admin_pb2.BroadcastNotificationRequest(all=True, type="t", title="t"), metadata=user
        ),
        node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=user),
        node.admin.DisconnectUser(admin_pb2.DisconnectUserRequest(user_id="x"), metadata=user),
        node.admin.GetConnectionStatus(
            admin_pb2.GetConnectionStatusRequest(user_id="someone"), metadata=user
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    own = await node.admin.GetConnectionStatus(
        admin_pb2.GetConnectionStatusRequest(), metadata=user
    )
    assert (own.user_id, own.connected) == ("plain", False)
    stats = await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=auth(ADMIN))
    assert stats.queued == 0, "nothing was created"


BAD_CREATES: dict[str, dict[str, Any]] = {
    "user_id": {"user_id": "", "type": "t", "title": "t"},
    "user_id ": {"user_id": "u" * 129, "type": "t", "title": "t"},
    "type": {"user_id": "u", "type": "", "title": "t"},
    "type ": {"user_id": "u", "type": "t" * 65, "title": "t"},
    "title": {"user_id": "u", "type": "t", "title": ""},
    "title ": {"user_id": "u", "type": "t", "title": "t" * 201},
    "message": {"user_id": "u", "type": "t", "title": "t", "message": "m" * 4001},
    "data_json": {"user_id": "u", "type": "t", "title": "t", "data_json": "[1, 2]"},
    "data_json ": {"user_id": "u", "type": "t", "title": "t", "data_json": "{oops"},
    "priority": {"user_id": "u", "type": "t", "title": "t", "priority": 99},
    "idempotency_key": {"user_id": "u", "type": "t", "title": "t", "idempotency_key": "k" * 256},
}


@pytest.mark.parametrize("field", BAD_CREATES)
async def test_malformed_create_is_invalid_argument_and_changes_nothing(
    node: Node, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(**BAD_CREATES[field]), metadata=auth(ADMIN)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(err.value.trailing_metadata() or ())
    assert trailers["tidings-error-field"] == field.strip()
    assert trailers["tidings-error-code"] == "invalid_message"
    stats = await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=auth(ADMIN))
    assert stats.queued == 0


async def test_malformed_broadcast_creates_nothing(node: Node) -> None:
    for request in (
        admin_pb2.BroadcastNotificationRequest(user_ids=["a", ""], type="t", title="t"),
        admin_pb2.BroadcastNotificationRequest(user_ids=["a"], type="", title="t"),
        admin_pb2.BroadcastNotificationRequest(type="t", title="t"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await node.admin.BroadcastNotification(request, metadata=auth(ADMIN))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    page = await node.users.ListNotifications(
        stream_pb2.ListNotificationsRequest(), metadata=auth(token("a"))
    )
    assert list(page.notifications) == []


async def test_malformed_user_calls(node: Node) -> None:
    me = auth(token("u"))
    for call in (
        node.users.MarkRead(stream_pb2.MarkReadRequest(notification_id=0), metadata=me),
        node.users.MarkRead(stream_pb2.MarkReadRequest(notification_id=-5), metadata=me),
        node.users.ListNotifications(stream_pb2.ListNotificationsRequest(limit=-1), metadata=me),
        node.users.ListNotifications(
            stream_pb2.ListNotificationsRequest(before_id=-1), metadata=me
        ),
        node.admin.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id=""), metadata=auth(ADMIN)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_since = node.users.Connect(metadata=(*me, ("tidings-since", "yesterday")))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bad_since.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_idempotent_create_and_broadcast(node: Node) -> None:
    request = admin_pb2.CreateNotificationRequest(
        user_id="idem", type="t", title="once", idempotency_key="order-1"
    )
    first = await node.admin.CreateNotification(request, metadata=auth(ADMIN))
    again = await node.admin.CreateNotification(request, metadata=auth(ADMIN))
    assert first.created and not again.created
    assert again.notification == first.notification
    n = await node.admin.BroadcastNotification(
        admin_pb2.BroadcastNotificationRequest(user_ids=["idem", "x", "y"], type="b", title="b"),
        metadata=auth(ADMIN),
    )
    assert n.created == 3
    everyone = await node.admin.BroadcastNotification(
        admin_pb2.BroadcastNotificationRequest(all=True, type="b", title="all"),
        metadata=auth(ADMIN),
    )
    assert everyone.created == 3
    stats = await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=auth(ADMIN))
    assert stats.queued == 1 + 3 + 3


#: ``data_json`` every JSON reader cannot take back (``JSON.parse`` included), or that
#: nests more than 64 levels: refused, since it is handed on to every client unparsed.
UNREADABLE_DATA = {
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": Infinity}',
    "-Infinity": '{"a": [1, -Infinity]}',
    "beyond a double": '{"a": 1e400}',
    "unpaired surrogate": '{"a": "\\udb44"}',
    "65 levels": '{"a": ' + "[" * 64 + "]" * 64 + "}",
    "10 000 levels": '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}",
}


@pytest.mark.parametrize("kind", UNREADABLE_DATA)
async def test_data_that_json_readers_refuse_is_invalid_and_changes_nothing(
    node: Node, kind: str
) -> None:
    data_json = UNREADABLE_DATA[kind]
    calls = (
        node.admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(
                user_id="nan", type="t", title="t", data_json=data_json
            ),
            metadata=auth(ADMIN),
        ),
        node.admin.BroadcastNotification(
            admin_pb2.BroadcastNotificationRequest(
                user_ids=["nan", "nan-2"], type="t", title="t", data_json=data_json
            ),
            metadata=auth(ADMIN),
        ),
    )
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        trailers = dict(err.value.trailing_metadata() or ())
        assert trailers["tidings-error-field"] == "data_json"
    for user in ("nan", "nan-2"):
        page = await node.users.ListNotifications(
            stream_pb2.ListNotificationsRequest(), metadata=auth(token(user))
        )
        assert list(page.notifications) == []


async def test_data_nested_64_levels_is_kept_intact(node: Node) -> None:
    data_json = '{"a":' + "[" * 63 + "]" * 63 + ',"big":123456789012345678901234567890}'
    made = await node.create("deep", data_json=data_json)
    assert made.data_json == data_json


async def test_who_am_i_names_the_caller_as_authenticated(node: Node) -> None:
    ann = auth(token("ann"))
    me = await node.users.WhoAmI(stream_pb2.WhoAmIRequest(), metadata=ann)
    assert (me.user_id, me.admin) == ("ann", False)
    boss = await node.users.WhoAmI(
        stream_pb2.WhoAmIRequest(require_admin=True), metadata=auth(ADMIN)
    )
    assert (boss.user_id, boss.admin) == ("ops", True)
    # require_admin refuses a user exactly as an admin-only call does.
    with pytest.raises(grpc.aio.AioRpcError) as admin_only:
        await node.users.WhoAmI(stream_pb2.WhoAmIRequest(require_admin=True), metadata=ann)
    with pytest.raises(grpc.aio.AioRpcError) as stats:
        await node.admin.GetStats(admin_pb2.GetStatsRequest(), metadata=ann)
    assert admin_only.value.code() == stats.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert admin_only.value.details() == stats.value.details()
    assert admin_only.value.trailing_metadata() == stats.value.trailing_metadata()


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_who_am_i_refuses_bad_credentials(node: Node, kind: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node.users.WhoAmI(stream_pb2.WhoAmIRequest(), metadata=md(BAD_TOKENS[kind]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
