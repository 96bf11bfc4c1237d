"""``POST /api/v1/notifications/batch`` against real server processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bridge.client import ISO_MS, open_socket, rest, token
from tests.bridge.test_rest import assert_error
from tests.harness import TEST_SECRET, ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

BATCH = "/api/v1/notifications/batch"
NOTIFICATIONS = "/api/v1/notifications"


def item(user: str, **fields: Any) -> dict[str, Any]:
    return {"user_id": user, "type": "note", "title": "hello", **fields}


async def inbox(server: ServerProcess, user: str) -> list[dict[str, Any]]:
    async with rest(server, user) as http:
        response = await http.get(NOTIFICATIONS, params={"limit": 200})
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()["notifications"]
    return page


async def test_batch_answers_201_in_request_order_and_delivers_in_id_order(
    insecure_server: ServerProcess, uid: str
) -> None:
    other = uid + "-b"
    socket, _ = await open_socket(insecure_server, user_id=uid)
    items = [
        item(uid, title="one", data={"n": 1}, priority="high", message="m"),
        item(other, title="two"),
        item(uid, title="three", idempotency_key="k3"),
    ]
    async with rest(insecure_server) as http:
        response = await http.post(BATCH, json={"notifications": items})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] == [True, True, True]
    made = body["notifications"]
    assert [n["title"] for n in made] == ["one", "two", "three"]
    assert [n["user_id"] for n in made] == [uid, other, uid]
    assert made[0]["data"] == {"n": 1} and made[0]["priority"] == "high"
    assert made[0]["message"] == "m" and made[1]["message"] == "" and made[1]["data"] == {}
    assert all(ISO_MS.match(n["created_at"]) for n in made)
    assert made[0]["id"] < made[1]["id"] < made[2]["id"]
    first = await socket.skip_to("notification")
    second = await socket.skip_to("notification")
    assert [first["notification"]["id"], second["notification"]["id"]] == [
        made[0]["id"],
        made[2]["id"],
    ]
    await socket.close()


async def test_a_retried_batch_returns_the_same_ids_with_created_false(
    insecure_server: ServerProcess, uid: str
) -> None:
    items = [item(uid, idempotency_key="a"), item(uid, idempotency_key="b")]
    async with rest(insecure_server) as http:
        first = await http.post(BATCH, json={"notifications": items})
        again = await http.post(BATCH, json={"notifications": items})
        mixed = await http.post(
            BATCH, json={"notifications": [*items, item(uid, idempotency_key="c")]}
        )
    assert first.status_code == 201
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    ids = [n["id"] for n in first.json()["notifications"]]
    assert [n["id"] for n in again.json()["notifications"]] == ids
    assert again.json()["created"] == [False, False]
    assert mixed.status_code == 201 and mixed.json()["created"] == [False, False, True]
    assert len(await inbox(insecure_server, uid)) == 3


async def test_a_key_repeated_inside_a_batch_is_deduplicated(
    insecure_server: ServerProcess, uid: str
) -> None:
    items = [item(uid, idempotency_key="same", title="first"), item(uid, idempotency_key="same")]
    async with rest(insecure_server) as http:
        response = await http.post(BATCH, json={"notifications": items})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] == [True, False]
    assert body["notifications"][0] == body["notifications"][1]
    assert [n["title"] for n in await inbox(insecure_server, uid)] == ["first"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"title": ""}, "notifications[2].title"),
        ({"title": "x" * 201}, "notifications[2].title"),
        ({"type": "x" * 65}, "notifications[2].type"),
        ({"message": "x" * 4001}, "notifications[2].message"),
        ({"user_id": "x" * 129}, "notifications[2].user_id"),
        ({"priority": "loud"}, "notifications[2].priority"),
        ({"data": [1]}, "notifications[2].data"),
        ({"idempotency_key": "k" * 256}, "notifications[2].idempotency_key"),
        ({"title": "nul\x00"}, "notifications[2].title"),  # refused by the engine
    ],
)
async def test_one_bad_item_is_a_422_naming_it_and_nothing_is_written(
    insecure_server: ServerProcess, uid: str, bad: dict[str, Any], field: str
) -> None:
    items = [item(uid), item(uid), {**item(uid), **bad}, item(uid)]
    async with rest(insecure_server) as http:
        response = await http.post(BATCH, json={"notifications": items})
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", field)
    assert field in response.json()["error"]["message"]
    assert await inbox(insecure_server, uid) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"notifications": []}, "notifications"),
        ({"notifications": [item("u")] * 1001}, "notifications"),
        ({}, "notifications"),
        ({"notifications": {"user_id": "u"}}, "notifications"),
        ({"notifications": [item("u"), "x"]}, "notifications[1]"),
        ([item("u")], None),
    ],
)
async def test_batch_size_and_shape_are_checked(
    insecure_server: ServerProcess, body: Any, field: str | None
) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(BATCH, json=body)
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", field)
    assert await inbox(insecure_server, "u") == []


async def test_a_batch_of_1000_is_accepted(insecure_server: ServerProcess, uid: str) -> None:
    items = [item(f"{uid}-{i % 10}", title=f"n{i}") for i in range(1000)]
    async with rest(insecure_server) as http:
        response = await http.post(BATCH, json={"notifications": items})
    assert response.status_code == 201, response.text
    assert len(response.json()["notifications"]) == 1000


async def test_batch_is_in_the_openapi_document(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        document = (await http.get("/openapi.json")).json()
    post = document["paths"][BATCH]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]
    assert {"201", "401", "403", "422"} <= set(post["responses"])


async def test_batch_is_admin_only(secure_server: ServerProcess, uid: str) -> None:
    body = {"notifications": [item(uid)]}
    async with rest(secure_server, bearer=token(uid)) as http:
        response = await http.post(BATCH, json=body)
    assert response.status_code == 403
    async with rest(secure_server, bearer=token("ops", roles=["admin"])) as http:
        response = await http.post(BATCH, json=body)
    assert response.status_code == 201


@pytest.mark.asyncio(loop_scope="function")
async def test_batch_through_rest_on_each_database(database_url: str) -> None:
    async with ServerProcess("--jwt-secret", TEST_SECRET, database_url=database_url) as server:
        admin = token("ops", roles=["admin"])
        socket, _ = await open_socket(server, token=token("ann"))
        items = [item("ann", title=f"n{i}") for i in range(300)] + [item("bo", title="")]
        async with rest(server, bearer=admin) as http:
            refused = await http.post(BATCH, json={"notifications": items})
            assert refused.status_code == 422
            assert refused.json()["error"]["field"] == "notifications[300].title"
            made = await http.post(BATCH, json={"notifications": items[:300]})
        assert made.status_code == 201, made.text
        ids = [n["id"] for n in made.json()["notifications"]]
        got = [(await socket.skip_to("notification"))["notification"]["id"] for _ in ids]
        assert got == ids == sorted(ids)
        await socket.close()
