"""The inbox features through the bridge (docs/PROTOCOL.md §6.7 and §5.9): REST endpoints and
WebSocket commands against real server processes. ``test_inbox_network.py`` runs these again
with the bridge and the engine in separate processes (REST over gRPC, WebSocket over the relay).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.bridge.client import ISO_MS, Socket, create, open_socket, rest
from tests.bridge.test_rest import assert_error
from tests.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTIFICATIONS = "/api/v1/notifications"
SEEN = f"{NOTIFICATIONS}/seen"
READ_ALL = f"{NOTIFICATIONS}/read_all"
COUNTS = f"{NOTIFICATIONS}/counts"
PREFERENCES = "/api/v1/preferences"
NEW_FIELDS = ("seen", "seen_at", "archived", "archived_at", "expires_at", "ignore_mutes")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_an_hour() -> str:
    return iso(datetime.now(UTC) + timedelta(hours=1))


async def listed(server: ServerProcess, user: str, **params: Any) -> list[int]:
    async with rest(server, user) as http:
        response = await http.get(NOTIFICATIONS, params=params)
    assert response.status_code == 200, response.text
    return [n["id"] for n in response.json()["notifications"]]


async def counts(server: ServerProcess, user: str) -> dict[str, Any]:
    async with rest(server, user) as http:
        response = await http.get(COUNTS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sockets(server: ServerProcess, user: str, count: int = 2) -> list[Socket]:
    """``count`` live sessions of ``user`` (greeted, replay consumed)."""
    opened = []
    for _ in range(count):
        socket, hello = await open_socket(server, user_id=user)
        for _ in range(hello["queued"]):
            await socket.expect("notification")
        opened.append(socket)
    return opened


async def close_all(*opened: Socket) -> None:
    for socket in opened:
        await socket.close()


# --- the notification object ------------------------------------------------------------------


async def test_every_notification_has_the_inbox_fields(
    insecure_server: ServerProcess, uid: str
) -> None:
    (socket,) = await sockets(insecure_server, uid, 1)
    expires = in_an_hour()
    made = await create(insecure_server, uid, expires_at=expires, ignore_mutes=True)
    assert {k: made[k] for k in NEW_FIELDS} == {
        "seen": False, "seen_at": None, "archived": False, "archived_at": None,
        "expires_at": expires, "ignore_mutes": True,
    }  # fmt: skip
    delivered = (await socket.expect("notification"))["notification"]
    assert delivered == made
    async with rest(insecure_server, uid) as http:
        page = (await http.get(NOTIFICATIONS)).json()["notifications"]
        assert page == [made]
        batch = await http.post(
            f"{NOTIFICATIONS}/batch",
            json={"notifications": [{"user_id": uid, "type": "t", "title": "b"}]},
        )
        assert batch.status_code == 201
        item = batch.json()["notifications"][0]
        assert {k: item[k] for k in NEW_FIELDS} == {
            "seen": False, "seen_at": None, "archived": False, "archived_at": None,
            "expires_at": None, "ignore_mutes": False,
        }  # fmt: skip
    await close_all(socket)


async def test_expires_at_is_read_with_any_zone(insecure_server: ServerProcess, uid: str) -> None:
    moment = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=250_000)
    made = await create(insecure_server, uid, expires_at=moment.isoformat())
    assert made["expires_at"] == iso(moment)
    east = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    other = await create(insecure_server, uid, expires_at=east)
    assert other["expires_at"] == iso(moment)


@pytest.mark.parametrize(
    "expires_at",
    [
        "2001-01-01T00:00:00Z",
        "2099-01-01T00:00:00",  # no zone
        "tomorrow",
        "",
        12345,
        True,
    ],
)
async def test_a_bad_expiry_is_422_and_creates_nothing(
    insecure_server: ServerProcess, uid: str, expires_at: object
) -> None:
    body = {"type": "t", "title": "x", "expires_at": expires_at}
    async with rest(insecure_server) as http:
        one = await http.post(NOTIFICATIONS, json={"user_id": uid, **body})
        assert one.status_code == 422, one.text
        assert_error(one.json(), "invalid_request", "expires_at")
        batch = await http.post(
            f"{NOTIFICATIONS}/batch", json={"notifications": [{"user_id": uid, **body}]}
        )
        assert batch.status_code == 422, batch.text
        assert_error(batch.json(), "invalid_request", "notifications[0].expires_at")
        broadcast = await http.post(f"{NOTIFICATIONS}/broadcast", json={"user_ids": [uid], **body})
        assert broadcast.status_code == 422, broadcast.text
        assert_error(broadcast.json(), "invalid_request", "expires_at")
    assert await listed(insecure_server, uid) == []


async def test_an_expired_notification_is_gone_everywhere(
    insecure_server: ServerProcess, uid: str
) -> None:
    kept = await create(insecure_server, uid)
    expires = datetime.now(UTC) + timedelta(seconds=1)
    await create(insecure_server, uid, expires_at=iso(expires))
    assert len(await listed(insecure_server, uid)) == 2
    # The rule is about the clock: wait until the instant has passed (no event to await).
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await listed(insecure_server, uid) == [kept["id"]]
    assert (await counts(insecure_server, uid))["unread"] == 1
    socket, hello = await open_socket(insecure_server, user_id=uid, since=0)
    assert hello["queued"] == 1
    assert (await socket.expect("notification"))["notification"]["id"] == kept["id"]
    await close_all(socket)


# --- seen, read all ---------------------------------------------------------------------------


async def test_mark_seen_tells_every_session_once(insecure_server: ServerProcess, uid: str) -> None:
    ids = [(await create(insecure_server, uid))["id"] for _ in range(3)]
    opened = await sockets(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        response = await http.post(SEEN, json={"up_to_id": ids[1]})
        assert response.status_code == 200, response.text
        assert response.json() == {"up_to_id": ids[1], "seen": 2}
        for socket in opened:
            assert await socket.expect("notifications_seen") == {
                "type": "notifications_seen", "up_to_id": ids[1],
            }  # fmt: skip
            await socket.quiet()
        assert (await http.post(SEEN, json={"up_to_id": ids[1]})).json()["seen"] == 0
        rest_of_them = await http.post(SEEN)  # no body: up to the newest
        assert rest_of_them.json() == {"up_to_id": ids[2], "seen": 1}
        page = (await http.get(NOTIFICATIONS)).json()["notifications"]
        assert all(n["seen"] and ISO_MS.match(n["seen_at"]) for n in page)
    assert (await counts(insecure_server, uid))["unseen"] == 0
    await close_all(*opened)


async def test_mark_all_read_by_type_tells_every_session_once(
    insecure_server: ServerProcess, uid: str
) -> None:
    a = await create(insecure_server, uid, "a")
    b = await create(insecure_server, uid, "b")
    opened = await sockets(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        await http.post(f"{NOTIFICATIONS}/{a['id']}/archive")
        for socket in opened:
            await socket.expect("notification_archived")
        response = await http.post(READ_ALL, json={"notification_type": "a"})
        assert response.json() == {"up_to_id": b["id"], "read": 1}, "archived ones included"
        for socket in opened:
            assert await socket.expect("notifications_marked_read") == {
                "type": "notifications_marked_read", "up_to_id": b["id"], "notification_type": "a",
            }  # fmt: skip
            await socket.quiet()
        everything = await http.post(READ_ALL, content=b"")
        assert everything.json() == {"up_to_id": b["id"], "read": 1}
        for socket in opened:
            event = await socket.expect("notifications_marked_read")
            assert event["notification_type"] is None
        unread = (await http.get(f"{NOTIFICATIONS}/unread_count")).json()
        assert unread == {"unread": 0}
    await close_all(*opened)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (SEEN, {"up_to_id": -1}, "up_to_id"),
        (SEEN, {"up_to_id": "5"}, "up_to_id"),
        (SEEN, {"up_to_id": 2**63}, "up_to_id"),
        (SEEN, [], None),
        (READ_ALL, {"notification_type": ""}, "notification_type"),
        (READ_ALL, {"notification_type": "x" * 65}, "notification_type"),
        (READ_ALL, {"notification_type": 3}, "notification_type"),
        (READ_ALL, {"up_to_id": 1.5}, "up_to_id"),
    ],
)
async def test_bad_seen_and_read_all_bodies_are_422(
    insecure_server: ServerProcess, uid: str, path: str, body: Any, field: str | None
) -> None:
    made = await create(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        response = await http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", field)
    assert (await counts(insecure_server, uid))["unseen"] == 1
    assert await listed(insecure_server, uid, read="false") == [made["id"]]


# --- archive, unarchive, delete ---------------------------------------------------------------


async def test_archive_and_unarchive(insecure_server: ServerProcess, uid: str) -> None:
    kept = await create(insecure_server, uid)
    filed = await create(insecure_server, uid)
    opened = await sockets(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        first = await http.post(f"{NOTIFICATIONS}/{filed['id']}/archive")
        assert first.status_code == 200
        assert first.json()["archived"] is True and ISO_MS.match(first.json()["archived_at"])
        again = await http.post(f"{NOTIFICATIONS}/{filed['id']}/archive")
        assert again.json()["archived_at"] == first.json()["archived_at"], "keeps the first"
        assert await listed(insecure_server, uid) == [kept["id"]]
        assert await listed(insecure_server, uid, archived="true") == [filed["id"]]
        assert (await counts(insecure_server, uid))["unread"] == 1
        back = await http.post(f"{NOTIFICATIONS}/{filed['id']}/unarchive")
        assert back.status_code == 200
        assert back.json()["archived"] is False and back.json()["archived_at"] is None
    for socket in opened:
        for kind in ("notification_archived", "notification_archived", "notification_unarchived"):
            assert await socket.expect(kind) == {"type": kind, "notification_id": filed["id"]}
        await socket.quiet()
    assert await listed(insecure_server, uid) == [filed["id"], kept["id"]]
    await close_all(*opened)


async def test_delete_is_204_and_for_good(insecure_server: ServerProcess, uid: str) -> None:
    first = await create(insecure_server, uid)
    doomed = await create(insecure_server, uid)
    opened = await sockets(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        response = await http.delete(f"{NOTIFICATIONS}/{doomed['id']}")
        assert response.status_code == 204 and response.content == b""
        for socket in opened:
            assert await socket.expect("notification_deleted") == {
                "type": "notification_deleted", "notification_id": doomed["id"],
            }  # fmt: skip
        assert (await http.delete(f"{NOTIFICATIONS}/{doomed['id']}")).status_code == 404
    assert await listed(insecure_server, uid) == [first["id"]]
    assert (await counts(insecure_server, uid))["unread"] == 1
    resumed, hello = await open_socket(insecure_server, user_id=uid, since=0)
    assert hello["queued"] == 1
    assert (await resumed.expect("notification"))["notification"]["id"] == first["id"]
    await close_all(resumed, *opened)


@pytest.mark.parametrize(
    ("method", "suffix"), [("POST", "/archive"), ("POST", "/unarchive"), ("DELETE", "")]
)
async def test_another_users_or_a_missing_id_is_404(
    insecure_server: ServerProcess, uid: str, method: str, suffix: str
) -> None:
    theirs = await create(insecure_server, uid + "-other")
    async with rest(insecure_server, uid) as http:
        for nid in (theirs["id"], theirs["id"] + 10_000, 0, "abc", 2**63):
            response = await http.request(method, f"{NOTIFICATIONS}/{nid}{suffix}")
            assert response.status_code == 404, (nid, response.text)
            assert_error(response.json(), "not_found")
    assert await listed(insecure_server, uid + "-other") == [theirs["id"]]


# --- counts and preferences -------------------------------------------------------------------


async def test_counts_leave_muted_types_out_of_the_totals(
    insecure_server: ServerProcess, uid: str
) -> None:
    assert await counts(insecure_server, uid) == {"unread": 0, "unseen": 0, "by_type": {}}
    await create(insecure_server, uid, "news")
    await create(insecure_server, uid, "news")
    await create(insecure_server, uid, "alert", ignore_mutes=True)
    await create(insecure_server, uid, "chat")
    async with rest(insecure_server, uid) as http:
        response = await http.put(PREFERENCES, json={"muted_types": ["news", "alert"]})
        assert response.json() == {"muted_types": ["alert", "news"]}
        assert (await http.get(f"{NOTIFICATIONS}/unread_count")).json() == {"unread": 2}
    assert await counts(insecure_server, uid) == {
        "unread": 2,
        "unseen": 2,
        "by_type": {
            "alert": {"unread": 1, "unseen": 1},
            "chat": {"unread": 1, "unseen": 1},
            "news": {"unread": 2, "unseen": 2},
        },
    }
    assert len(await listed(insecure_server, uid)) == 4, "muted types are still listed"


async def test_preferences_are_stored_and_applied_to_live_sessions(
    insecure_server: ServerProcess, uid: str
) -> None:
    opened = await sockets(insecure_server, uid)
    async with rest(insecure_server, uid) as http:
        assert (await http.get(PREFERENCES)).json() == {"muted_types": []}
        response = await http.put(PREFERENCES, json={"muted_types": ["b", "a", "b"]})
        assert response.status_code == 200
        assert response.json() == {"muted_types": ["a", "b"]}
        assert (await http.get(PREFERENCES)).json() == {"muted_types": ["a", "b"]}
    for socket in opened:
        assert await socket.expect("preferences_updated") == {
            "type": "preferences_updated", "muted_types": ["a", "b"],
        }  # fmt: skip
    await create(insecure_server, uid, "a")
    loud = await create(insecure_server, uid, "a", ignore_mutes=True)
    plain = await create(insecure_server, uid, "c")
    for socket in opened:
        assert (await socket.expect("notification"))["notification"]["id"] == loud["id"]
        assert (await socket.expect("notification"))["notification"]["id"] == plain["id"]
    await close_all(*opened)
    later, hello = await open_socket(insecure_server, user_id=uid, since=0)
    replayed = [(await later.expect("notification"))["notification"]["id"] for _ in range(2)]
    assert hello["queued"] == 2 and replayed == [loud["id"], plain["id"]], "muted: not replayed"
    await close_all(later)


@pytest.mark.parametrize(
    "body",
    [
        {"muted_types": [""]},
        {"muted_types": ["x" * 65]},
        {"muted_types": [f"t{i}" for i in range(257)]},
        {"muted_types": "a"},
        {"muted_types": [1]},
        {},
    ],
)
async def test_bad_preferences_are_422_and_change_nothing(
    insecure_server: ServerProcess, uid: str, body: dict[str, Any]
) -> None:
    async with rest(insecure_server, uid) as http:
        await http.put(PREFERENCES, json={"muted_types": ["kept"]})
        response = await http.put(PREFERENCES, json=body)
        assert response.status_code == 422, response.text
        assert_error(response.json(), "invalid_request", "muted_types")
        assert (await http.get(PREFERENCES)).json() == {"muted_types": ["kept"]}


# --- list filters -----------------------------------------------------------------------------


async def test_list_filters(insecure_server: ServerProcess, uid: str) -> None:
    low = await create(insecure_server, uid, "a", priority="low")
    high = await create(insecure_server, uid, "b", priority="high")
    urgent = await create(insecure_server, uid, "c", priority="urgent")
    async with rest(insecure_server, uid) as http:
        await http.post(f"{NOTIFICATIONS}/{high['id']}/read")
        await http.post(SEEN, json={"up_to_id": low["id"]})

        async def ids(params: Any) -> list[int]:
            response = await http.get(NOTIFICATIONS, params=params)
            assert response.status_code == 200, response.text
            return [n["id"] for n in response.json()["notifications"]]

        assert await ids({"type": "a,c"}) == [urgent["id"], low["id"]]
        assert await ids([("type", "a"), ("type", "c")]) == [urgent["id"], low["id"]]
        assert await ids({"read": "true"}) == [high["id"]]
        assert await ids({"read": "false"}) == [urgent["id"], low["id"]]
        assert await ids({"seen": "true"}) == [low["id"]]
        assert await ids({"seen": "false", "read": "false"}) == [urgent["id"]]
        assert await ids({"priority": "high,urgent"}) == [urgent["id"], high["id"]]
        assert await ids({"archived": "true"}) == []
        assert low["id"] not in await ids({"created_after": low["created_at"]}), "strict"
        assert low["id"] not in await ids({"created_before": low["created_at"]}), "strict"
        before = iso(datetime.now(UTC) - timedelta(hours=1))
        assert await ids({"created_after": before}) == [urgent["id"], high["id"], low["id"]]
        assert await ids({"created_before": before}) == []
        assert await ids({"limit": 1, "before_id": urgent["id"], "type": "a,b"}) == [high["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "x" * 65}, "type"),
        ({"priority": "bogus"}, "priority"),
        ({"priority": "low,HIGH"}, "priority"),
        ({"read": "maybe"}, "read"),
        ({"seen": "1"}, "seen"),
        ({"archived": "yes"}, "archived"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-01-01T00:00:00"}, "created_before"),
    ],
)
async def test_bad_list_filters_are_422_naming_the_field(
    insecure_server: ServerProcess, uid: str, params: dict[str, str], field: str
) -> None:
    async with rest(insecure_server, uid) as http:
        response = await http.get(NOTIFICATIONS, params=params)
    assert response.status_code == 422, response.text
    assert_error(response.json(), "invalid_request", field)


# --- the WebSocket commands -------------------------------------------------------------------


async def test_ws_commands_reach_every_session_of_the_user(
    insecure_server: ServerProcess, uid: str
) -> None:
    a = await create(insecure_server, uid, "a")
    b = await create(insecure_server, uid, "b")
    mine, other = await sockets(insecure_server, uid)
    (stranger,) = await sockets(insecure_server, uid + "-stranger", 1)
    await mine.send({"type": "mark_seen"})
    await mine.send({"type": "mark_all_read", "notification_type": "a", "up_to_id": b["id"]})
    await mine.send({"type": "archive", "notification_id": a["id"]})
    await mine.send({"type": "unarchive", "notification_id": a["id"]})
    await mine.send({"type": "delete", "notification_id": b["id"]})
    await mine.send({"type": "update_preferences", "muted_types": ["z", "y"]})
    for socket in (mine, other):
        assert await socket.expect("notifications_seen") == {
            "type": "notifications_seen", "up_to_id": b["id"],
        }  # fmt: skip
        assert await socket.expect("notifications_marked_read") == {
            "type": "notifications_marked_read", "up_to_id": b["id"], "notification_type": "a",
        }  # fmt: skip
        for kind, nid in (
            ("notification_archived", a["id"]),
            ("notification_unarchived", a["id"]),
            ("notification_deleted", b["id"]),
        ):
            assert await socket.expect(kind) == {"type": kind, "notification_id": nid}
        assert (await socket.expect("preferences_updated"))["muted_types"] == ["y", "z"]
    await mine.send({"type": "get_counts"})
    assert await mine.expect("counts") == {
        "type": "counts", "unread": 0, "unseen": 0, "by_type": {},
    }  # fmt: skip
    for socket in (other, stranger):
        await socket.quiet()  # counts answer the asking session only; nothing reached the stranger
    assert await listed(insecure_server, uid) == [a["id"]]
    await close_all(mine, other, stranger)


async def test_ws_counts(insecure_server: ServerProcess, uid: str) -> None:
    await create(insecure_server, uid, "x")
    await create(insecure_server, uid, "y", ignore_mutes=True)
    (socket,) = await sockets(insecure_server, uid, 1)
    await socket.send({"type": "update_preferences", "muted_types": ["x", "y"]})
    await socket.expect("preferences_updated")
    assert await socket.ask({"type": "get_counts"}) == {
        "type": "counts",
        "unread": 1,
        "unseen": 1,
        "by_type": {"x": {"unread": 1, "unseen": 1}, "y": {"unread": 1, "unseen": 1}},
    }
    await close_all(socket)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ({"type": "archive"}, "invalid_message"),
        ({"type": "archive", "notification_id": "1"}, "invalid_message"),
        ({"type": "unarchive", "notification_id": 0}, "invalid_message"),
        ({"type": "delete", "notification_id": -3}, "invalid_message"),
        ({"type": "mark_seen", "up_to_id": -1}, "invalid_message"),
        ({"type": "mark_all_read", "notification_type": ""}, "invalid_message"),
        ({"type": "mark_all_read", "notification_type": 7}, "invalid_message"),
        ({"type": "update_preferences", "muted_types": [""]}, "invalid_message"),
        ({"type": "update_preferences", "muted_types": ["x" * 65]}, "invalid_message"),
        ({"type": "update_preferences"}, "invalid_message"),
        ({"type": "delete", "notification_id": 2**63}, "not_found"),
        ({"type": "delete", "notification_id": 2**62}, "not_found"),
    ],
)
async def test_ws_bad_commands_are_answered_and_change_nothing(
    insecure_server: ServerProcess, uid: str, command: dict[str, Any], code: str
) -> None:
    made = await create(insecure_server, uid)
    (socket,) = await sockets(insecure_server, uid, 1)
    answer = await socket.ask(command)
    assert answer["type"] == "error" and answer["code"] == code, answer
    await socket.quiet()
    assert await listed(insecure_server, uid) == [made["id"]]
    await close_all(socket)


@pytest.mark.parametrize("kind", ["archive", "unarchive", "delete"])
async def test_ws_another_users_id_is_not_found(
    insecure_server: ServerProcess, uid: str, kind: str
) -> None:
    theirs = await create(insecure_server, uid + "-other")
    (socket,) = await sockets(insecure_server, uid, 1)
    answer = await socket.ask({"type": kind, "notification_id": theirs["id"]})
    assert answer["type"] == "error" and answer["code"] == "not_found", answer
    await close_all(socket)
    assert await listed(insecure_server, uid + "-other") == [theirs["id"]]


async def test_rest_changes_reach_ws_sessions(insecure_server: ServerProcess, uid: str) -> None:
    """A REST call tells the live sessions, as a command of one of them does."""
    made = await create(insecure_server, uid)
    (socket,) = await sockets(insecure_server, uid, 1)
    async with rest(insecure_server, uid) as http:
        await http.post(SEEN)
        await http.post(READ_ALL)
        await http.put(PREFERENCES, json={"muted_types": []})
    assert (await socket.expect("notifications_seen"))["up_to_id"] == made["id"]
    assert (await socket.expect("notifications_marked_read"))["up_to_id"] == made["id"]
    assert await socket.expect("preferences_updated") == {
        "type": "preferences_updated", "muted_types": [],
    }  # fmt: skip
    await close_all(socket)


async def test_the_openapi_document_lists_the_inbox(insecure_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=insecure_server.http_url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths[SEEN]["post"]["responses"]) >= {"200", "422"}
    assert paths[SEEN]["post"]["requestBody"]["required"] is False
    assert paths[READ_ALL]["post"]["requestBody"]["required"] is False
    assert "204" in paths[f"{NOTIFICATIONS}/{{notification_id}}"]["delete"]["responses"]
    assert {"get", "put"} <= set(paths[PREFERENCES])
    assert "get" in paths[COUNTS]
    query = {p["name"] for p in paths[NOTIFICATIONS]["get"]["parameters"]}
    assert query >= {"type", "read", "seen", "archived", "priority", "created_after"}
