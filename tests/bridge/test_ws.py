"""The WebSocket protocol of docs/PROTOCOL.md §5 against a real server process (insecure mode)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from tidings.v1 import stream_pb2, stream_pb2_grpc
from websockets.exceptions import InvalidStatus

from tests.bridge.client import ISO_MS, create, open_socket, rest
from tests.harness import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- session basics ---------------------------------------------------------------------


async def test_connection_established_fields(insecure_server: ServerProcess, uid: str) -> None:
    socket, hello = await open_socket(insecure_server, user_id=uid)
    try:
        assert set(hello) == {
            "type", "user_id", "connection_id", "heartbeat_interval", "queued", "truncated",
            "server_time",
        }  # fmt: skip
        assert hello["user_id"] == uid
        assert isinstance(hello["connection_id"], str) and hello["connection_id"]
        assert hello["heartbeat_interval"] == 30
        assert hello["queued"] == 0
        assert hello["truncated"] is False
        assert ISO_MS.match(hello["server_time"])
    finally:
        await socket.close()


async def test_connection_ids_are_unique(insecure_server: ServerProcess, uid: str) -> None:
    a, hello_a = await open_socket(insecure_server, user_id=uid)
    b, hello_b = await open_socket(insecure_server, user_id=uid)
    assert hello_a["connection_id"] != hello_b["connection_id"]
    await a.close()
    await b.close()


async def test_ping_pong(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    pong = await socket.ask({"type": "ping"})
    assert pong["type"] == "pong"
    assert ISO_MS.match(pong["timestamp"])
    await socket.close()


async def test_live_notification_has_the_section_3_shape(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    created = await create(
        insecure_server, uid, "application_update", "New version",
        message="1.2 is out", data={"version": [1, 2], "big": 12345678901234567}, priority="high",
    )  # fmt: skip
    event = await socket.expect("notification")
    n = event["notification"]
    assert n == created
    assert list(n) == [
        "id", "user_id", "type", "title", "message", "data", "priority", "created_at", "read",
        "read_at", "seen", "seen_at", "archived", "archived_at", "expires_at", "ignore_mutes",
    ]  # fmt: skip
    assert n["user_id"] == uid
    assert n["data"] == {"version": [1, 2], "big": 12345678901234567}
    assert n["priority"] == "high"
    assert n["read"] is False and n["read_at"] is None
    assert ISO_MS.match(n["created_at"])
    await socket.close()


async def test_integer_user_id_is_a_string(insecure_server: ServerProcess) -> None:
    user = str(int(time.time() * 1000) % 10**9 + 10**9)
    socket, hello = await open_socket(insecure_server, user_id=user)
    async with rest(insecure_server) as http:
        response = await http.post(
            "/api/v1/notifications", json={"user_id": int(user), "type": "t", "title": "x"}
        )
    assert response.status_code == 201
    event = await socket.expect("notification")
    assert event["notification"]["user_id"] == user == hello["user_id"]
    await socket.close()


# --- mark read -------------------------------------------------------------------------


async def test_mark_read_reaches_every_session(insecure_server: ServerProcess, uid: str) -> None:
    first, _ = await open_socket(insecure_server, user_id=uid)
    second, _ = await open_socket(insecure_server, user_id=uid)
    created = await create(insecure_server, uid)
    await first.expect("notification")
    await second.expect("notification")
    answer = await first.ask({"type": "mark_read", "notification_id": created["id"]})
    assert answer == {"type": "notification_marked_read", "notification_id": created["id"]}
    assert await second.expect("notification_marked_read") == answer
    async with rest(insecure_server, uid) as http:
        assert (await http.get("/api/v1/notifications/unread_count")).json() == {"unread": 0}
    await first.close()
    await second.close()


async def test_mark_read_unknown_and_foreign_ids_are_not_found(
    insecure_server: ServerProcess, uid: str
) -> None:
    other = await create(insecure_server, uid + "-other")
    socket, _ = await open_socket(insecure_server, user_id=uid)
    for nid in (other["id"], 987654321, 2**63 + 5):
        error = await socket.ask({"type": "mark_read", "notification_id": nid})
        assert error["type"] == "error" and error["code"] == "not_found", error
        assert isinstance(error["message"], str)
    await socket.quiet()
    await socket.close()


# --- errors that never close the socket ------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('"ping"', "invalid_json"),
        ('{"type": "shout"}', "unknown_message_type"),
        ('{"no_type": 1}', "unknown_message_type"),
        ('{"type": 5}', "unknown_message_type"),
        ('{"type": "mark_read"}', "invalid_message"),
        ('{"type": "mark_read", "notification_id": "12"}', "invalid_message"),
        ('{"type": "mark_read", "notification_id": 0}', "invalid_message"),
        ('{"type": "mark_read", "notification_id": -3}', "invalid_message"),
        ('{"type": "mark_read", "notification_id": 1.5}', "invalid_message"),
        ('{"type": "mark_read", "notification_id": true}', "invalid_message"),
        ('{"type": "subscribe"}', "invalid_message"),
        ('{"type": "subscribe", "notification_types": "a"}', "invalid_message"),
        ('{"type": "subscribe", "notification_types": [1]}', "invalid_message"),
        ('{"type": "unsubscribe", "notification_types": null}', "invalid_message"),
        ('{"type": "subscribe", "notification_types": [""]}', "invalid_message"),
        ('{"type": "subscribe", "notification_types": ["' + "x" * 65 + '"]}', "invalid_message"),
    ],
)
async def test_bad_frames_get_an_error_and_the_session_goes_on(
    insecure_server: ServerProcess, uid: str, frame: str, code: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    error = await socket.ask(frame)
    assert error["type"] == "error", error
    assert error["code"] == code, error
    assert set(error) == {"type", "code", "message"}
    await socket.quiet()
    await socket.close()


async def test_rate_limited_messages_are_ignored_not_fatal(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    burst = 250  # default: 50/s with bursts of 100
    for _ in range(burst):
        await socket.send({"type": "ping"})
    kinds = [(await socket.recv())["type"] for _ in range(burst)]
    assert kinds.count("pong") >= 100
    errors = [k for k in kinds if k == "error"]
    assert errors, kinds
    assert kinds.count("pong") + len(errors) == burst
    await asyncio.sleep(1.1)  # the bucket refills: the session is still usable
    assert (await socket.ask({"type": "ping"}))["type"] == "pong"
    await socket.close()


async def test_rate_limited_error_code(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    for _ in range(150):
        await socket.send({"type": "ping"})
    async with asyncio.timeout(5):
        while (message := await socket.recv())["type"] != "error":
            pass
    assert message["code"] == "rate_limited"
    await socket.close()


# --- filters -------------------------------------------------------------------------------


async def test_subscribe_from_all_types_admits_only_those(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    update = await socket.ask({"type": "subscribe", "notification_types": ["b", "a"]})
    assert update == {
        "type": "subscription_updated",
        "notification_types": ["a", "b"],
        "excluded_types": [],
    }
    await create(insecure_server, uid, "c")
    await socket.quiet()
    wanted = await create(insecure_server, uid, "a")
    assert (await socket.expect("notification"))["notification"]["id"] == wanted["id"]
    update = await socket.ask({"type": "subscribe", "notification_types": ["d"]})
    assert update["notification_types"] == ["a", "b", "d"]
    await socket.close()


async def test_unsubscribe_everything_from_only_receives_nothing(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await socket.ask({"type": "subscribe", "notification_types": ["a"]})
    update = await socket.ask({"type": "unsubscribe", "notification_types": ["a"]})
    assert update == {
        "type": "subscription_updated",
        "notification_types": [],
        "excluded_types": [],
    }
    await create(insecure_server, uid, "a")
    await create(insecure_server, uid, "b")
    await socket.quiet()
    update = await socket.ask({"type": "subscribe", "notification_types": ["b"]})
    assert update["notification_types"] == ["b"]
    wanted = await create(insecure_server, uid, "b")
    assert (await socket.expect("notification"))["notification"]["id"] == wanted["id"]
    await socket.close()


async def test_unsubscribe_from_all_types_excludes(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    update = await socket.ask({"type": "unsubscribe", "notification_types": ["noise"]})
    assert update == {
        "type": "subscription_updated",
        "notification_types": None,
        "excluded_types": ["noise"],
    }
    update = await socket.ask({"type": "unsubscribe", "notification_types": ["chatter"]})
    assert update["notification_types"] is None
    assert update["excluded_types"] == ["chatter", "noise"]
    await create(insecure_server, uid, "noise")
    await socket.quiet()
    wanted = await create(insecure_server, uid, "signal")
    assert (await socket.expect("notification"))["notification"]["id"] == wanted["id"]
    # subscribe from "all but" switches to "only"
    update = await socket.ask({"type": "subscribe", "notification_types": ["noise"]})
    assert update == {
        "type": "subscription_updated",
        "notification_types": ["noise"],
        "excluded_types": [],
    }
    await socket.close()


async def test_types_query_is_an_initial_subscribe(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid, types="a,b")
    await create(insecure_server, uid, "c")
    await socket.quiet()
    wanted = await create(insecure_server, uid, "b")
    assert (await socket.expect("notification"))["notification"]["id"] == wanted["id"]
    await socket.close()


# --- replay and resume -----------------------------------------------------------------------


async def test_offline_queue_is_replayed_then_live(
    insecure_server: ServerProcess, uid: str
) -> None:
    queued = [await create(insecure_server, uid, title=f"n{i}") for i in range(3)]
    socket, hello = await open_socket(insecure_server, user_id=uid)
    assert hello["queued"] == 3
    got = [(await socket.expect("notification"))["notification"]["id"] for _ in range(3)]
    assert got == [n["id"] for n in queued]
    live = await create(insecure_server, uid)
    assert (await socket.expect("notification"))["notification"]["id"] == live["id"]
    await socket.close()
    again, hello = await open_socket(insecure_server, user_id=uid)
    assert hello["queued"] == 0  # delivered ones are not queued twice
    await again.close()


async def test_since_resumes_from_the_store(insecure_server: ServerProcess, uid: str) -> None:
    made = [await create(insecure_server, uid, title=f"n{i}") for i in range(4)]
    first, _ = await open_socket(insecure_server, user_id=uid)
    for _ in made:
        await first.expect("notification")
    await first.close()
    socket, hello = await open_socket(insecure_server, user_id=uid, since=made[1]["id"])
    assert hello["queued"] == 2
    got = [(await socket.expect("notification"))["notification"]["id"] for _ in range(2)]
    assert got == [made[2]["id"], made[3]["id"]]
    await socket.quiet()
    await socket.close()


async def test_bad_since_is_refused_with_1008(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid, since="yesterday", greet=False)
    error = await socket.expect("error")
    assert error["code"] == "invalid_message"
    assert (await socket.closed())[0] == 1008


# --- limits, origin, operator, shutdown --------------------------------------------------------


async def test_frame_over_64_kib_closes_with_1009(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await socket.send('{"type": "ping", "pad": "' + "x" * 65536 + '"}')
    assert (await socket.closed())[0] == 1009


async def test_frame_over_64_kib_in_bytes_but_not_characters_closes_with_1009(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    await socket.send('{"type": "ping", "pad": "' + "é" * 40000 + '"}')  # 80 kB, 40 k chars
    assert (await socket.closed())[0] == 1009


async def test_frame_just_under_the_limit_is_fine(insecure_server: ServerProcess, uid: str) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)
    frame = '{"type": "ping", "pad": "'
    frame += "x" * (65536 - len(frame) - 2) + '"}'
    assert len(frame.encode()) == 65536
    assert (await socket.ask(frame))["type"] == "pong"
    await socket.close()


async def test_foreign_origin_is_refused_with_403(insecure_server: ServerProcess, uid: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(insecure_server, origin="http://evil.example", user_id=uid)
    assert refused.value.response.status_code == 403


async def test_same_host_origin_and_no_origin_are_allowed(
    insecure_server: ServerProcess, uid: str
) -> None:
    same, _ = await open_socket(insecure_server, origin=insecure_server.http_url, user_id=uid)
    await same.close()
    none, _ = await open_socket(insecure_server, user_id=uid)
    await none.close()


async def test_allowed_origins_list(tmp_path_factory: pytest.TempPathFactory, uid: str) -> None:
    db = tmp_path_factory.mktemp("origins") / "tidings.db"
    args = ("--insecure", "--allowed-origins", "https://app.example, http://localhost:3000")
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{db}") as server:
        ok, _ = await open_socket(server, origin="https://app.example", user_id=uid)
        await ok.close()
        ok, _ = await open_socket(server, origin="http://LOCALHOST:3000", user_id=uid)
        await ok.close()
        for origin in ("https://evil.example", server.http_url, "null"):
            with pytest.raises(InvalidStatus) as refused:
                await open_socket(server, origin=origin, user_id=uid)
            assert refused.value.response.status_code == 403


async def test_operator_disconnect_closes_with_4001(
    insecure_server: ServerProcess, uid: str
) -> None:
    a, _ = await open_socket(insecure_server, user_id=uid)
    b, _ = await open_socket(insecure_server, user_id=uid)
    async with rest(insecure_server) as http:
        status = await http.get("/api/v1/ws/notifications/status", params={"user_id": uid})
        assert status.json() == {"user_id": uid, "connected": True, "connection_count": 2}
        response = await http.post("/api/v1/ws/notifications/disconnect", json={"user_id": uid})
    assert response.json() == {"disconnected": 2}
    assert (await a.closed())[0] == 4001
    assert (await b.closed())[0] == 4001


async def test_sigterm_closes_sockets_with_1001_and_exits_0(
    tmp_path_factory: pytest.TempPathFactory, uid: str
) -> None:
    db = tmp_path_factory.mktemp("sigterm") / "tidings.db"
    server = await ServerProcess("--insecure", database_url=f"sqlite+aiosqlite:///{db}").start()
    try:
        sockets = [(await open_socket(server, user_id=f"{uid}-{i}"))[0] for i in range(3)]
        started = time.monotonic()
        assert server.proc is not None
        server.proc.terminate()
        for socket in sockets:
            assert (await socket.closed())[0] == 1001
        assert await server.stop(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        await server.kill()


async def test_engine_unreachable(tmp_path_factory: pytest.TempPathFactory, uid: str) -> None:
    """A bridge whose engine does not answer: sockets close 1011, REST and health say 503."""
    args = ("--upstream", "127.0.0.1:9", "--insecure")
    db = tmp_path_factory.mktemp("unreachable") / "tidings.db"
    async with ServerProcess(
        *args, role="bridge", database_url=f"sqlite+aiosqlite:///{db}"
    ) as server:
        socket, _ = await open_socket(server, user_id=uid, greet=False)
        assert (await socket.closed())[0] == 1011
        async with rest(server, uid) as http:
            response = await http.get("/api/v1/notifications/unread_count")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            health = await http.get("/healthz")
            assert health.status_code == 503


# --- a browser session and a gRPC session of the same user ----------------------------------


async def test_browser_and_grpc_sessions_share_notifications_and_read_state(
    insecure_server: ServerProcess, uid: str
) -> None:
    metadata = (("x-tidings-user", uid),)
    async with grpc.aio.insecure_channel(insecure_server.grpc_addr) as channel:
        stub = stream_pb2_grpc.NotificationStreamStub(channel)
        call = stub.Connect(metadata=metadata)
        try:
            first = await asyncio.wait_for(call.read(), 5)
            assert isinstance(first, stream_pb2.ConnectResponse)
            assert first.WhichOneof("kind") == "connection_established"
            socket, _ = await open_socket(insecure_server, user_id=uid)

            created = await create(insecure_server, uid, title="both")
            via_ws = (await socket.expect("notification"))["notification"]
            via_grpc = await asyncio.wait_for(call.read(), 5)
            assert isinstance(via_grpc, stream_pb2.ConnectResponse)
            assert via_ws["id"] == via_grpc.notification.notification.id == created["id"]
            assert via_grpc.notification.notification.title == "both"

            # the browser marks it read: the gRPC session hears of it
            await socket.ask({"type": "mark_read", "notification_id": created["id"]})
            heard = await asyncio.wait_for(call.read(), 5)
            assert isinstance(heard, stream_pb2.ConnectResponse)
            assert heard.notification_marked_read.notification_id == created["id"]

            # the gRPC client marks another read: the browser hears of it
            second = await create(insecure_server, uid, title="again")
            await socket.expect("notification")
            await asyncio.wait_for(call.read(), 5)
            await call.write(
                stream_pb2.ConnectRequest(
                    mark_read=stream_pb2.MarkReadCommand(notification_id=second["id"])
                )
            )
            echoed = await socket.expect("notification_marked_read")
            assert echoed["notification_id"] == second["id"]
            await socket.close()
        finally:
            call.cancel()


async def test_heartbeats_and_a_truncated_replay(
    tmp_path_factory: pytest.TempPathFactory, uid: str
) -> None:
    db = tmp_path_factory.mktemp("heartbeat") / "tidings.db"
    args = ("--insecure", "--heartbeat-interval", "0.2", "--max-offline-queue", "2")
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{db}") as server:
        made = [await create(server, uid, title=f"n{i}") for i in range(3)]
        socket, hello = await open_socket(server, user_id=uid)
        assert hello["heartbeat_interval"] == 0.2
        assert hello["queued"] == 2 and hello["truncated"] is True
        got = [(await socket.expect("notification"))["notification"]["id"] for _ in range(2)]
        assert got == [made[1]["id"], made[2]["id"]]
        beat = await socket.expect("heartbeat", timeout=2)
        assert set(beat) == {"type", "timestamp"} and ISO_MS.match(beat["timestamp"])
        await socket.expect("heartbeat", timeout=2)
        await socket.close()


async def test_permessage_deflate_is_negotiated_without_context(
    insecure_server: ServerProcess, uid: str
) -> None:
    socket, _ = await open_socket(insecure_server, user_id=uid)  # the client offers it
    assert socket.ws.response is not None
    agreed = socket.ws.response.headers["Sec-WebSocket-Extensions"]
    assert agreed.startswith("permessage-deflate")
    assert "client_no_context_takeover" in agreed
    # compressed client messages are understood, one after the other
    for _ in range(3):
        await socket.send({"type": "ping", "padding": "x" * 2000})
        assert (await socket.expect("pong"))["type"] == "pong"
    await socket.close()


async def test_logs_never_show_tokens(tmp_path_factory: pytest.TempPathFactory, uid: str) -> None:
    """Even the debug access log leaves query strings (and so ``?token=``) out."""
    db = tmp_path_factory.mktemp("logs") / "tidings.db"
    secret = "s3cr3t-token-value-that-must-not-be-logged"
    args = ("--jwt-secret", "k" * 40, "--log-level", "debug")
    async with ServerProcess(*args, database_url=f"sqlite+aiosqlite:///{db}") as server:
        socket, _ = await open_socket(server, token=secret, greet=False)
        assert (await socket.expect("error"))["code"] == "unauthorized"
        assert (await socket.closed())[0] == 1008
        async with rest(server, bearer=secret) as http:
            response = await http.get("/api/v1/notifications", params={"token": secret})
            assert response.status_code == 401
        await server.stop()
    assert "/api/v1/ws/notifications" in server.output  # the access log is on
    assert secret not in server.output


async def test_browser_leaving_ends_the_engine_session(
    insecure_server: ServerProcess, uid: str
) -> None:
    """Gracefully or by a dropped TCP connection: the gRPC stream goes, nothing leaks."""
    sockets = [(await open_socket(insecure_server, user_id=uid))[0] for _ in range(10)]
    async with rest(insecure_server) as http:
        status = await http.get("/api/v1/ws/notifications/status", params={"user_id": uid})
        assert status.json()["connection_count"] == 10
        for i, socket in enumerate(sockets):
            if i % 2:
                await socket.close()
            else:
                socket.ws.transport.abort()
        async with asyncio.timeout(5):
            while True:  # the engine learns of it asynchronously; bounded by the timeout
                status = await http.get("/api/v1/ws/notifications/status", params={"user_id": uid})
                if status.json()["connection_count"] == 0:
                    break
                await asyncio.sleep(0.05)
