"""A REST broadcast is given its own deadline: one that takes longer than an ordinary
call (a large broadcast commits slice after slice) still answers 201, not a 503 that
would invite a retry giving its first recipients the notification twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from quart import Quart
from tidings.v1 import admin_pb2

from bridge import rest
from tests.bridge.standin import bridge_app

pytestmark = pytest.mark.timeout(30)

#: How long the stand-in engine's broadcast takes: longer than the ordinary deadline
#: the tests set, shorter than the broadcast's.
BROADCAST_TAKES = 0.5


class Admin:
    """A stand-in engine whose broadcast takes ``BROADCAST_TAKES`` seconds."""

    async def BroadcastNotification(
        self, request: admin_pb2.BroadcastNotificationRequest, context: Any
    ) -> admin_pb2.BroadcastNotificationResponse:
        await asyncio.sleep(BROADCAST_TAKES)  # the slices being committed
        return admin_pb2.BroadcastNotificationResponse(created=len(request.user_ids))


@pytest_asyncio.fixture
async def app() -> AsyncIterator[Quart]:
    async with bridge_app(Admin()) as app:
        yield app


BODY = {"user_ids": ["a", "b", "c"], "type": "t", "title": "everyone"}


async def test_a_broadcast_longer_than_an_ordinary_call_answers_201(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "CALL_TIMEOUT", BROADCAST_TAKES / 5)
    response = await app.test_client().post("/api/v1/notifications/broadcast", json=BODY)
    assert response.status_code == 201, await response.get_data(as_text=True)
    assert await response.get_json() == {"created": 3}


async def test_a_broadcast_past_its_own_deadline_is_unavailable(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "BROADCAST_TIMEOUT", BROADCAST_TAKES / 5)
    response = await app.test_client().post("/api/v1/notifications/broadcast", json=BODY)
    assert response.status_code == 503
    assert (await response.get_json())["error"]["code"] == "unavailable"
