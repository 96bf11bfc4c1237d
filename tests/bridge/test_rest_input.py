"""REST input found wrong from outside: bodies that are not strict JSON, data no JSON
reader takes back, credentials judged before input, and the 500 shape."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from quart import Quart

from bridge.app import create_app
from tests.bridge.client import open_socket, rest, token
from tests.bridge.conftest import sqlite_url
from tests.bridge.test_rest import assert_error
from tests.harness import TEST_SECRET, ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTIFICATIONS = "/api/v1/notifications"
BROADCAST = f"{NOTIFICATIONS}/broadcast"
DISCONNECT = "/api/v1/ws/notifications/disconnect"
JSON = {"Content-Type": "application/json"}


def nested(levels: int) -> str:
    """A JSON value of ``levels`` nested arrays."""
    return "[" * levels + "]" * levels


#: ``data`` that no JSON reader (``JSON.parse`` included) would take back, or deeper than
#: 64 levels. The body is written by hand: a JSON library would not write most of these.
UNREADABLE_DATA = {
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": Infinity}',
    "-Infinity": '{"a": [-Infinity]}',
    "beyond a double": '{"a": 1e400}',
    "unpaired surrogate": '{"a": "\\udb44"}',
    "65 levels": '{"a": ' + nested(64) + "}",
    "300 levels": '{"a": ' + nested(299) + "}",
    "10 000 levels": '{"a": ' + nested(9_999) + "}",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logged_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """An insecure node of its own, so that its log holds only this module's requests."""
    db = tmp_path_factory.mktemp("logged") / "tidings.db"
    async with ServerProcess("--insecure", database_url=sqlite_url(db)) as server:
        yield server


async def inbox(server: ServerProcess, user: str) -> list[dict[str, Any]]:
    async with rest(server, user) as http:
        notifications: list[dict[str, Any]] = (await http.get(NOTIFICATIONS)).json()[
            "notifications"
        ]
    return notifications


# --- bodies that are not strict JSON --------------------------------------------------------


async def test_bodies_that_are_not_utf8_are_422_and_log_no_traceback(
    tmp_path: Path,
) -> None:
    async with ServerProcess("--insecure", database_url=sqlite_url(tmp_path / "t.db")) as server:
        start = len(server.log)
        async with rest(server) as http:
            for path in (NOTIFICATIONS, BROADCAST, DISCONNECT):
                response = await http.post(path, content=b"\xff", headers=JSON)
                assert response.status_code == 422, (path, response.text)
                assert_error(response.json(), "invalid_request")
                assert "UTF-8" in response.json()["error"]["message"]
        assert await server.stop() == 0  # the whole log is read once the process ends
    during = server.log[start:]
    assert not [line for line in during if "Traceback" in line or "ERROR" in line], during


@pytest.mark.parametrize("kind", UNREADABLE_DATA)
@pytest.mark.parametrize("path", [NOTIFICATIONS, BROADCAST])
async def test_data_no_json_reader_takes_back_is_422_naming_data(
    logged_server: ServerProcess, uid: str, kind: str, path: str
) -> None:
    recipient = '"user_ids": ["' + uid + '"]' if path == BROADCAST else f'"user_id": "{uid}"'
    body = f'{{{recipient}, "type": "t", "title": "x", "data": {UNREADABLE_DATA[kind]}}}'
    async with rest(logged_server) as http:
        response = await http.post(path, content=body.encode(), headers=JSON)
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", "data")
    assert await inbox(logged_server, uid) == []


async def test_data_nested_64_levels_is_accepted(logged_server: ServerProcess, uid: str) -> None:
    body = f'{{"user_id": "{uid}", "type": "t", "title": "x", "data": {{"a": {nested(63)}}}}}'
    async with rest(logged_server) as http:
        response = await http.post(NOTIFICATIONS, content=body.encode(), headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["data"] == {"a": json.loads(nested(63))}


async def test_nan_outside_data_names_its_field(logged_server: ServerProcess, uid: str) -> None:
    body = f'{{"user_id": "{uid}", "type": "t", "title": NaN}}'
    async with rest(logged_server) as http:
        response = await http.post(NOTIFICATIONS, content=body.encode(), headers=JSON)
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", "title")


# --- schema and server agree ----------------------------------------------------------------


async def test_broadcast_with_null_user_ids_and_all_false_is_refused(
    logged_server: ServerProcess,
) -> None:
    async with rest(logged_server) as http:
        response = await http.post(
            BROADCAST, json={"user_ids": None, "all": False, "type": "t", "title": "x"}
        )
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", "user_ids")


@pytest.mark.parametrize("value", ["1", "yes", "True", ""])
async def test_unread_only_is_true_or_false(
    logged_server: ServerProcess, uid: str, value: str
) -> None:
    async with rest(logged_server, uid) as http:
        response = await http.get(NOTIFICATIONS, params={"unread_only": value})
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", "unread_only")


async def test_unknown_method_says_which_are_allowed(logged_server: ServerProcess) -> None:
    async with rest(logged_server) as http:
        response = await http.delete(NOTIFICATIONS)
    assert response.status_code == 405
    assert_error(response.json(), "method_not_allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_the_schema_documents_every_answer(logged_server: ServerProcess) -> None:
    async with rest(logged_server) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    create = paths[NOTIFICATIONS]["post"]
    assert create["requestBody"]["required"] is True
    assert {"201", "401", "403", "413", "422", "500", "503"} <= set(create["responses"])
    user_id = create["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "user_id"
    ]
    assert {"type": "integer"} in user_id["anyOf"]
    assert "403" not in paths[f"{NOTIFICATIONS}/unread_count"]["get"]["responses"]
    assert "text/plain" in str(paths["/metrics"]["get"]["responses"]["200"]["content"])


# --- who is calling comes first -------------------------------------------------------------

BAD_INPUT: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", NOTIFICATIONS, {"content": b"{not json", "headers": JSON}),
    ("POST", NOTIFICATIONS, {"json": {"user_id": "u", "type": "t"}}),
    ("POST", BROADCAST, {"json": {"user_ids": None, "type": "t", "title": "x"}}),
    ("POST", DISCONNECT, {"content": b"\xff", "headers": JSON}),
]
USER_BAD_INPUT: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", NOTIFICATIONS, {"params": {"limit": "0"}}),
    ("POST", f"{NOTIFICATIONS}/abc/read", {}),
    ("POST", f"{NOTIFICATIONS}/987654321/read", {}),
]
IDS = ["create-not-json", "create-no-title", "broadcast-no-users", "disconnect-not-utf8"]
USER_IDS = ["list-limit-0", "read-bad-id", "read-unknown-id"]


@pytest.mark.parametrize(
    ("method", "path", "request_args"), BAD_INPUT + USER_BAD_INPUT, ids=IDS + USER_IDS
)
async def test_no_credentials_and_bad_input_is_401(
    secure_server: ServerProcess, method: str, path: str, request_args: dict[str, Any]
) -> None:
    async with rest(secure_server) as http:
        response = await http.request(method, path, **request_args)
    assert response.status_code == 401, response.text
    assert_error(response.json(), "unauthorized")


@pytest.mark.parametrize(("method", "path", "request_args"), BAD_INPUT, ids=IDS)
async def test_a_user_with_bad_input_on_the_admin_surface_is_403(
    secure_server: ServerProcess, uid: str, method: str, path: str, request_args: dict[str, Any]
) -> None:
    async with rest(secure_server, bearer=token(uid)) as http:
        response = await http.request(method, path, **request_args)
    assert response.status_code == 403, response.text
    assert_error(response.json(), "forbidden")


async def test_an_admin_with_bad_input_gets_the_input_error(secure_server: ServerProcess) -> None:
    async with rest(secure_server, bearer=token("ops", roles=["admin"])) as http:
        response = await http.post(NOTIFICATIONS, json={"user_id": "u", "type": "t"})
    assert response.status_code == 422
    assert_error(response.json(), "invalid_request", "title")


# --- tokens ---------------------------------------------------------------------------------


def string_exp_token(user: str) -> str:
    claims = {"sub": user, "exp": str(int(time.time()) + 3600), "roles": ["admin"]}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


async def test_a_token_whose_exp_is_a_string_is_refused(
    secure_server: ServerProcess, uid: str
) -> None:
    async with rest(secure_server, bearer=string_exp_token(uid)) as http:
        response = await http.get(f"{NOTIFICATIONS}/unread_count")
    assert response.status_code == 401
    assert_error(response.json(), "unauthorized")
    socket, _ = await open_socket(secure_server, greet=False, token=string_exp_token(uid))
    assert (await socket.expect("error"))["code"] == "unauthorized"
    assert (await socket.closed())[0] == 1008


# --- faults of the server -------------------------------------------------------------------


async def test_a_fault_of_the_bridge_is_500_internal_error() -> None:
    app: Quart = create_app("127.0.0.1:1")

    @app.get("/api/v1/broken")
    async def broken() -> str:
        raise RuntimeError("a bug")

    response = await app.test_client().get("/api/v1/broken")
    assert response.status_code == 500
    body = await response.get_json()
    assert_error(body, "internal_error")
    assert "a bug" not in body["error"]["message"]
