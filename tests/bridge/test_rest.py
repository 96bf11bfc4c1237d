"""The REST endpoints of docs/PROTOCOL.md §6 against real server processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bridge.client import ISO_MS, create, open_socket, rest, token
from tests.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTIFICATIONS = "/api/v1/notifications"


def assert_error(body: Any, code: str, field: str | None = None) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"]
    if field is None:
        assert "field" not in error, body
    else:
        assert error["field"] == field, body


# --- create ------------------------------------------------------------------------------


async def test_create_answers_201_and_the_notification(
    insecure_server: ServerProcess, uid: str
) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(
            NOTIFICATIONS,
            json={
                "user_id": uid, "type": "welcome", "title": "Hi", "message": "there",
                "data": {"x": {"y": [1, 2.5, None, True]}}, "priority": "urgent",
            },
        )  # fmt: skip
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    n = response.json()
    assert isinstance(n["id"], int)
    assert n["user_id"] == uid
    assert n["type"] == "welcome" and n["title"] == "Hi" and n["message"] == "there"
    assert n["data"] == {"x": {"y": [1, 2.5, None, True]}}
    assert n["priority"] == "urgent"
    assert ISO_MS.match(n["created_at"])
    assert n["read"] is False and n["read_at"] is None


async def test_create_defaults(insecure_server: ServerProcess, uid: str) -> None:
    n = await create(insecure_server, uid)
    assert n["message"] == "" and n["data"] == {} and n["priority"] == "normal"


async def test_data_keeps_numbers_exact_even_beyond_64_bits(
    insecure_server: ServerProcess, uid: str
) -> None:
    big = "123456789012345678901234567890"  # more than 64 bits: no float may touch it
    body = f'{{"user_id": "{uid}", "type": "t", "title": "x", "data": {{"big": {big}, "f": 0.1}}}}'
    async with rest(insecure_server) as http:
        response = await http.post(
            NOTIFICATIONS, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 201, response.text
    assert f'"big":{big}' in response.text
    assert '"f":0.1' in response.text


async def test_create_accepts_an_integer_user_id(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(NOTIFICATIONS, json={"user_id": 4242, "type": "t", "title": "x"})
    assert response.status_code == 201
    assert response.json()["user_id"] == "4242"


@pytest.mark.parametrize("where", ["body", "header"])
async def test_idempotent_replay_returns_the_first(
    insecure_server: ServerProcess, uid: str, where: str
) -> None:
    body = {"user_id": uid, "type": "t", "title": "once"}
    headers = {}
    if where == "body":
        body["idempotency_key"] = "key-1"
    else:
        headers["Idempotency-Key"] = "key-1"
    async with rest(insecure_server) as http:
        first = await http.post(NOTIFICATIONS, json=body, headers=headers)
        again = await http.post(NOTIFICATIONS, json=body, headers=headers)
        count = await http.get(f"{NOTIFICATIONS}/unread_count", headers={"X-Tidings-User": uid})
    assert first.status_code == 201
    assert again.status_code == 201  # the first answer, again (as Stripe and the contract's table)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json() == first.json()
    assert count.json() == {"unread": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "t", "title": "x"}, "user_id"),
        ({"user_id": "", "type": "t", "title": "x"}, "user_id"),
        ({"user_id": "u" * 129, "type": "t", "title": "x"}, "user_id"),
        ({"user_id": True, "type": "t", "title": "x"}, "user_id"),
        ({"user_id": 1.5, "type": "t", "title": "x"}, "user_id"),
        ({"user_id": "u", "title": "x"}, "type"),
        ({"user_id": "u", "type": "", "title": "x"}, "type"),
        ({"user_id": "u", "type": "t" * 65, "title": "x"}, "type"),
        ({"user_id": "u", "type": "t"}, "title"),
        ({"user_id": "u", "type": "t", "title": 5}, "title"),
        ({"user_id": "u", "type": "t", "title": "x" * 201}, "title"),
        ({"user_id": "u", "type": "t", "title": "x", "message": "m" * 4001}, "message"),
        ({"user_id": "u", "type": "t", "title": "x", "data": [1]}, "data"),
        ({"user_id": "u", "type": "t", "title": "x", "data": "{}"}, "data"),
        ({"user_id": "u", "type": "t", "title": "x", "priority": "meh"}, "priority"),
        (
            {"user_id": "u", "type": "t", "title": "x", "idempotency_key": "k" * 256},
            "idempotency_key",
        ),
        ({"user_id": "u", "type": "t", "title": "nul\x00"}, "title"),
    ],
)
async def test_create_refuses_bad_bodies_with_422_naming_the_field(
    insecure_server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(NOTIFICATIONS, json=body)
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", field)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"x=1", "text/plain")],
)
async def test_create_refuses_bodies_that_are_not_json_objects(
    insecure_server: ServerProcess, content: bytes, content_type: str
) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(
            NOTIFICATIONS, content=content, headers={"Content-Type": content_type}
        )
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request")


# --- broadcast -----------------------------------------------------------------------------


async def test_broadcast_to_user_ids(insecure_server: ServerProcess, uid: str) -> None:
    users = [f"{uid}-a", f"{uid}-b"]
    socket, _ = await open_socket(insecure_server, user_id=users[0])
    async with rest(insecure_server) as http:
        response = await http.post(
            f"{NOTIFICATIONS}/broadcast",
            json={"user_ids": [*users, users[0]], "type": "news", "title": "All hands"},
        )
        assert response.status_code == 201
        assert response.json() == {"created": 2}
        for user in users:
            count = await http.get(
                f"{NOTIFICATIONS}/unread_count", headers={"X-Tidings-User": user}
            )
            assert count.json() == {"unread": 1}
    event = await socket.expect("notification")
    assert event["notification"]["title"] == "All hands"
    await socket.close()


async def test_broadcast_accepts_integer_user_ids(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(
            f"{NOTIFICATIONS}/broadcast",
            json={"user_ids": [777001, "777002"], "type": "t", "title": "x"},
        )
        assert response.status_code == 201
        listed = await http.get(NOTIFICATIONS, headers={"X-Tidings-User": "777001"})
    assert listed.json()["notifications"][0]["user_id"] == "777001"


async def test_broadcast_to_all_known_users(insecure_server: ServerProcess, uid: str) -> None:
    await create(insecure_server, uid)  # now the service knows uid
    async with rest(insecure_server) as http:
        response = await http.post(
            f"{NOTIFICATIONS}/broadcast", json={"all": True, "type": "t", "title": "everyone"}
        )
        assert response.status_code == 201
        assert response.json()["created"] >= 1
        mine = await http.get(NOTIFICATIONS, headers={"X-Tidings-User": uid})
    assert mine.json()["notifications"][0]["title"] == "everyone"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"user_ids": ["ok-1", ""]}, "user_ids"),
        ({"user_ids": ["ok-1", "u" * 129]}, "user_ids"),
        ({"user_ids": ["ok-1", None]}, "user_ids"),
        ({"user_ids": ["ok-1", "nul\x00"]}, "user_ids"),
        ({"user_ids": "ok-1"}, "user_ids"),
        ({"user_ids": []}, "user_ids"),
        ({}, "user_ids"),
        ({"user_ids": ["ok-1"], "title": ""}, "title"),
        ({"user_ids": ["ok-1"], "all": "yes"}, "all"),
    ],
)
async def test_bad_broadcast_writes_nothing(
    insecure_server: ServerProcess, uid: str, extra: dict[str, Any], field: str
) -> None:
    body = {"type": "t", "title": "x", **extra}
    if isinstance(body.get("user_ids"), list):
        body["user_ids"] = [
            u.replace("ok", uid) if isinstance(u, str) else u for u in body["user_ids"]
        ]
    async with rest(insecure_server) as http:
        response = await http.post(f"{NOTIFICATIONS}/broadcast", json=body)
        assert response.status_code == 422, response.text
        assert_error(response.json(), "invalid_request", field)
        count = await http.get(
            f"{NOTIFICATIONS}/unread_count", headers={"X-Tidings-User": f"{uid}-1"}
        )
        listed = await http.get(NOTIFICATIONS, headers={"X-Tidings-User": f"{uid}-1"})
    assert count.json() == {"unread": 0}
    assert listed.json() == {"notifications": [], "has_more": False}


# --- the caller's inbox -----------------------------------------------------------------------


async def test_list_is_newest_first_with_paging(insecure_server: ServerProcess, uid: str) -> None:
    made = [await create(insecure_server, uid, title=f"n{i}") for i in range(5)]
    async with rest(insecure_server, uid) as http:
        page = (await http.get(NOTIFICATIONS, params={"limit": 2})).json()
        assert [n["id"] for n in page["notifications"]] == [made[4]["id"], made[3]["id"]]
        assert page["has_more"] is True
        rest_page = (
            await http.get(NOTIFICATIONS, params={"limit": 10, "before_id": made[3]["id"]})
        ).json()
    assert [n["id"] for n in rest_page["notifications"]] == [n["id"] for n in reversed(made[:3])]
    assert rest_page["has_more"] is False
    assert rest_page["notifications"][0] == made[2]


async def test_list_default_limit_is_50_and_at_most_200(
    insecure_server: ServerProcess, uid: str
) -> None:
    async with rest(insecure_server) as http:
        response = await http.post(
            f"{NOTIFICATIONS}/broadcast",
            json={"user_ids": [uid], "type": "t", "title": "x"},
        )
        assert response.status_code == 201
        for _ in range(205):
            created = await http.post(
                NOTIFICATIONS, json={"user_id": uid, "type": "t", "title": "x"}
            )
            assert created.status_code == 201
    async with rest(insecure_server, uid) as http:
        default = (await http.get(NOTIFICATIONS)).json()
        assert len(default["notifications"]) == 50 and default["has_more"] is True
        capped = (await http.get(NOTIFICATIONS, params={"limit": 1000})).json()
        assert len(capped["notifications"]) == 200 and capped["has_more"] is True
        huge = (await http.get(NOTIFICATIONS, params={"limit": 10**12})).json()
        assert len(huge["notifications"]) == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"before_id": "x"}, "before_id"),
        ({"before_id": "0"}, "before_id"),
        ({"unread_only": "perhaps"}, "unread_only"),
    ],
)
async def test_list_refuses_bad_queries(
    insecure_server: ServerProcess, uid: str, params: dict[str, str], field: str
) -> None:
    async with rest(insecure_server, uid) as http:
        response = await http.get(NOTIFICATIONS, params=params)
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", field)


async def test_unread_only_count_and_mark_read(insecure_server: ServerProcess, uid: str) -> None:
    first = await create(insecure_server, uid, title="first")
    second = await create(insecure_server, uid, title="second")
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await socket.skip_to("notification")
    await socket.skip_to("notification")
    async with rest(insecure_server, uid) as http:
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 2}
        response = await http.post(f"{NOTIFICATIONS}/{first['id']}/read")
        assert response.status_code == 200
        n = response.json()
        assert n["id"] == first["id"] and n["read"] is True and ISO_MS.match(n["read_at"])
        # live sessions are told
        assert (await socket.expect("notification_marked_read"))["notification_id"] == first["id"]
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 1}
        unread = (await http.get(NOTIFICATIONS, params={"unread_only": "true"})).json()
        assert [x["id"] for x in unread["notifications"]] == [second["id"]]
        everything = (await http.get(NOTIFICATIONS, params={"unread_only": "false"})).json()
        assert len(everything["notifications"]) == 2
    await socket.close()


@pytest.mark.parametrize(
    "path_id", ["999999999", "abc", "0", "-1", "1.0", "99999999999999999999999"]
)
async def test_mark_read_unknown_ids_are_404(
    insecure_server: ServerProcess, uid: str, path_id: str
) -> None:
    async with rest(insecure_server, uid) as http:
        response = await http.post(f"{NOTIFICATIONS}/{path_id}/read")
    assert response.status_code == 404
    assert_error(response.json(), "not_found")


async def test_another_users_notification_is_404_like_a_missing_one(
    insecure_server: ServerProcess, uid: str
) -> None:
    theirs = await create(insecure_server, uid + "-owner")
    async with rest(insecure_server, uid) as http:
        response = await http.post(f"{NOTIFICATIONS}/{theirs['id']}/read")
        missing = await http.post(f"{NOTIFICATIONS}/987654321/read")
    assert response.status_code == missing.status_code == 404
    assert response.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    async with rest(insecure_server, uid + "-owner") as http:
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 1}


# --- operators -----------------------------------------------------------------------------


async def test_stats(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await create(insecure_server, uid)
    await socket.expect("notification")
    async with rest(insecure_server) as http:
        response = await http.get("/api/v1/ws/notifications/stats")
    assert response.status_code == 200
    stats = response.json()
    for key in ("total_connections", "unique_users", "messages_sent", "queued", "dropped"):
        assert isinstance(stats[key], int), key
    assert stats["total_connections"] >= 1 and stats["unique_users"] >= 1
    assert stats["messages_sent"] >= 1
    assert isinstance(stats["uptime_s"], float)
    assert isinstance(stats["node_id"], str) and stats["node_id"]
    assert stats["nodes"][0]["node_id"] == stats["node_id"]
    await socket.close()


async def test_status_of_the_caller(insecure_server: ServerProcess, uid: str) -> None:
    async with rest(insecure_server, uid) as http:
        before = (await http.get("/api/v1/ws/notifications/status")).json()
        socket, _ = await open_socket(insecure_server, user_id=uid)
        after = (await http.get("/api/v1/ws/notifications/status")).json()
    assert before == {"user_id": uid, "connected": False, "connection_count": 0}
    assert after == {"user_id": uid, "connected": True, "connection_count": 1}
    await socket.close()


async def test_disconnect_body_is_validated(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.post("/api/v1/ws/notifications/disconnect", json={})
        nobody = await http.post("/api/v1/ws/notifications/disconnect", json={"user_id": 31337})
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", "user_id")
    assert nobody.json() == {"disconnected": 0}


# --- liveness, metrics, documents ------------------------------------------------------------


async def test_healthz(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await create(insecure_server, uid)
    await socket.expect("notification")
    await socket.ask("garbage")
    async with rest(insecure_server) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "tidings_bridge_ws_connections " in text
    assert 'tidings_bridge_ws_messages_sent_total{type="notification"}' in text
    assert 'tidings_bridge_errors_total{code="invalid_json",transport="ws"}' in text
    assert "tidings_bridge_delivery_latency_seconds_bucket" in text
    await socket.close()


async def test_openapi_document(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/api/v1/notifications",
        "/api/v1/notifications/broadcast",
        "/api/v1/notifications/unread_count",
        "/api/v1/notifications/{notification_id}/read",
        "/api/v1/ws/notifications/stats",
        "/api/v1/ws/notifications/status",
        "/api/v1/ws/notifications/disconnect",
    ):
        assert path in paths, path
    create_body = paths["/api/v1/notifications"]["post"]["requestBody"]
    assert create_body["content"]["application/json"]["schema"]


async def test_unknown_route_has_the_error_shape(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        response = await http.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert_error(response.json(), "not_found")


async def test_inbox_page_and_client_are_served(insecure_server: ServerProcess) -> None:
    async with rest(insecure_server) as http:
        page = await http.get("/")
        client = await http.get("/tidings.js")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<title>" in page.text
    assert client.status_code == 200 and "javascript" in client.headers["content-type"]
    assert "export class TidingsClient" in client.text


# --- secure mode -------------------------------------------------------------------------------


async def test_secure_rest_needs_a_token(secure_server: ServerProcess, uid: str) -> None:
    async with rest(secure_server) as http:
        response = await http.get(f"{NOTIFICATIONS}/unread_count")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error(response.json(), "unauthorized")
        insecure_header = await http.get(
            f"{NOTIFICATIONS}/unread_count", headers={"X-Tidings-User": uid}
        )
        assert insecure_header.status_code == 401
        forged = token(uid, secret="another-secret-of-32-bytes-or-more!!")
        wrong_key = await http.get(
            f"{NOTIFICATIONS}/unread_count", headers={"Authorization": f"Bearer {forged}"}
        )
        assert wrong_key.status_code == 401
        expired = await http.get(
            f"{NOTIFICATIONS}/unread_count",
            headers={"Authorization": f"Bearer {token(uid, expires_in=-60)}"},
        )
        assert expired.status_code == 401
    async with rest(secure_server, bearer=token(uid)) as http:
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 0}


async def test_secure_admin_surface_is_403_for_users(
    secure_server: ServerProcess, uid: str
) -> None:
    async with rest(secure_server, bearer=token(uid)) as http:
        created = await http.post(NOTIFICATIONS, json={"user_id": uid, "type": "t", "title": "x"})
        assert created.status_code == 403
        assert_error(created.json(), "forbidden")
        for method, path, body in (
            ("POST", f"{NOTIFICATIONS}/broadcast", {"all": True, "type": "t", "title": "x"}),
            ("GET", "/api/v1/ws/notifications/stats", None),
            ("POST", "/api/v1/ws/notifications/disconnect", {"user_id": uid}),
        ):
            response = await http.request(method, path, json=body)
            assert response.status_code == 403, (path, response.text)
        own = await http.get("/api/v1/ws/notifications/status")
        assert own.status_code == 200 and own.json()["user_id"] == uid
        other = await http.get("/api/v1/ws/notifications/status", params={"user_id": "someone"})
        assert other.status_code == 403
        assert_error(other.json(), "forbidden")
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 0}


async def test_secure_admin_creates_and_the_user_reads(
    secure_server: ServerProcess, uid: str
) -> None:
    async with rest(secure_server, bearer=token("ops", roles=["admin"])) as admin:
        created = await admin.post(NOTIFICATIONS, json={"user_id": uid, "type": "t", "title": "x"})
        assert created.status_code == 201
        status = await admin.get("/api/v1/ws/notifications/status", params={"user_id": uid})
        assert status.json() == {"user_id": uid, "connected": False, "connection_count": 0}
    async with rest(secure_server, bearer=token(uid)) as user:
        listed = (await user.get(NOTIFICATIONS)).json()
        assert [n["id"] for n in listed["notifications"]] == [created.json()["id"]]
        read = await user.post(f"{NOTIFICATIONS}/{created.json()['id']}/read")
        assert read.status_code == 200
    async with rest(secure_server, bearer=token("intruder")) as intruder:
        response = await intruder.post(f"{NOTIFICATIONS}/{created.json()['id']}/read")
        assert response.status_code == 404


# --- secure WebSocket auth -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"token": "not-a-jwt"},
        {"token": token("u", expires_in=-60)},
        {"token": token("u", secret="another-secret-of-32-bytes-or-more!!")},
        {"user_id": "u"},
    ],
    ids=["missing", "garbage", "expired", "wrong-key", "insecure-user-id"],
)
async def test_secure_ws_auth_failure_is_unauthorized_then_1008(
    secure_server: ServerProcess, credentials: dict[str, Any]
) -> None:
    socket, _ = await open_socket(secure_server, greet=False, **credentials)
    error = await socket.expect("error")
    assert error["code"] == "unauthorized"
    assert (await socket.closed())[0] == 1008


async def test_secure_ws_with_token_query_or_header(secure_server: ServerProcess, uid: str) -> None:
    socket, hello = await open_socket(secure_server, token=token(uid))
    assert hello["user_id"] == uid
    await socket.close()
    socket, hello = await open_socket(
        secure_server, headers={"Authorization": f"Bearer {token(uid)}"}
    )
    assert hello["user_id"] == uid
    await socket.close()


@pytest.mark.parametrize(
    "params",
    [{"since": "yesterday"}, {"since": "-1"}, {"types": ",".join(f"t{i}" for i in range(200))}],
)
async def test_secure_ws_credentials_are_judged_before_connect_parameters(
    secure_server: ServerProcess, params: dict[str, Any]
) -> None:
    refused, _ = await open_socket(secure_server, greet=False, token="not-a-jwt", **params)
    assert (await refused.expect("error"))["code"] == "unauthorized"
    assert (await refused.closed())[0] == 1008
    # with good credentials the same parameters are what is wrong
    bad, _ = await open_socket(secure_server, greet=False, token=token("u"), **params)
    assert (await bad.expect("error"))["code"] == "invalid_message"
    assert (await bad.closed())[0] == 1008
