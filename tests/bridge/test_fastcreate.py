"""``bridge.fastcreate`` answers a create exactly as the Quart handler does: the same
status, headers (in order) and body, for the engine's answers and for a body that never
comes. The app is called at the ASGI level, the engine a stand-in answering at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from quart import Quart
from tidings.v1 import admin_pb2, notification_pb2

from bridge.app import BridgeApp
from bridge.fastcreate import FastCreate
from bridge.state import bridge_state
from bridge.upstream import ERROR_CODE_KEY
from tests.bridge.standin import bridge_app

pytestmark = pytest.mark.timeout(30)


class Admin:
    """A stand-in engine: the title says how to answer."""

    async def CreateNotification(
        self, request: admin_pb2.CreateNotificationRequest, context: Any
    ) -> admin_pb2.CreateNotificationResponse:
        if request.title == "denied":
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this call needs the admin role",
                ((ERROR_CODE_KEY, "forbidden"),),
            )
        if request.title == "nobody":
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "no credentials",
                ((ERROR_CODE_KEY, "unauthorized"),),
            )
        if request.title == "boom":
            raise RuntimeError("a bug")
        notification = notification_pb2.Notification(
            id=7,
            user_id=request.user_id,
            type=request.type,
            title=request.title,
            message=request.message,
            data_json=request.data_json or "{}",
            created_at=Timestamp(seconds=1_800_000_000),
        )
        return admin_pb2.CreateNotificationResponse(
            notification=notification, created=request.title != "again"
        )


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Quart]:
    async with bridge_app(Admin()) as app:
        yield app


def scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/notifications",
        "raw_path": b"/api/v1/notifications",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "extensions": {},
    }


async def call(app: Quart, body: bytes, *, send_body: bool = True) -> tuple[int, list[Any], bytes]:
    """One request at the ASGI level: status, headers, body."""
    messages: list[dict[str, Any]] = []
    if send_body:
        messages = [
            {"type": "http.request", "body": body, "more_body": True},
            {"type": "http.request", "body": b"", "more_body": False},
        ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Future()  # the client neither sends nor leaves
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(body), receive, send)  # type: ignore[arg-type]
    start, *rest = sent
    payload = b"".join(m.get("body", b"") for m in rest)
    return start["status"], [tuple(h) for h in start["headers"]], payload


def create(title: str) -> bytes:
    return json.dumps({"user_id": "u1", "type": "t", "title": title}).encode()


async def both(app: Quart, body: bytes, **kwargs: Any) -> tuple[Any, Any]:
    """The lean path's answer and Quart's, to the same request."""
    assert isinstance(app, BridgeApp) and app.fast_create is not None
    lean = await call(app, body, **kwargs)
    fast, app.fast_create = app.fast_create, None
    try:
        quart = await call(app, body, **kwargs)
    finally:
        app.fast_create = fast
    return lean, quart


@pytest.mark.parametrize("title", ["ok", "again", "denied", "nobody", "boom"])
async def test_the_engines_answers_are_given_as_quart_gives_them(app: Quart, title: str) -> None:
    lean, quart = await both(app, create(title))
    assert lean == quart
    status = {"ok": 201, "again": 201, "denied": 403, "nobody": 401, "boom": 500}[title]
    assert lean[0] == status


async def test_errors_are_counted_as_quart_counts_them(app: Quart) -> None:
    errors = bridge_state(app).metrics.errors
    await both(app, create("denied"))
    assert errors.labels("http", "forbidden")._value.get() == 2


async def test_a_body_that_never_comes_is_408_as_quart_answers(app: Quart) -> None:
    assert isinstance(app, BridgeApp) and app.fast_create is not None
    app.config["BODY_TIMEOUT"] = 0.2
    app.fast_create = FastCreate(
        bridge_state(app),
        super(BridgeApp, app).asgi_app,
        max_body=1 << 20,
        body_timeout=0.2,
        logger=app.logger,
    )
    lean, quart = await both(app, create("ok"), send_body=False)
    assert lean == quart
    assert lean[0] == 408
    assert json.loads(lean[2])["error"]["code"] == "request_timeout"
