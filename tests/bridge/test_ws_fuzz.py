"""A seeded Hypothesis fuzz of the WebSocket protocol (docs/PROTOCOL.md §5) against one server.

Each example opens a socket for the fuzzed user and sends a script of frames at once
(before the greeting): commands with random and wrong arguments, unknown types, text
that is no JSON, huge frames, WebSocket pings, binary frames and frames that break
RFC 6455. Every frame must get its documented answer — a reply, an ``error`` with a
documented code, a pong frame — or the documented close code; never 1006 or 1011.
Meanwhile a control session of another user must receive every notification created
during the fuzz, in order, and the server must stay healthy.

``TIDINGS_FUZZ_EXAMPLES`` sets the number of examples (default 2000; ``make soak``
passes 20000). The run is derandomized: the same examples every time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bridge.client import Socket, open_socket
from tests.bridge.ws_raw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawSocket, frame
from tests.harness import ServerProcess
from tests.waiting import until

EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "2000"))
MAX_MESSAGE_BYTES = 65536
ERROR_CODES = {
    "invalid_json",
    "unknown_message_type",
    "invalid_message",
    "not_found",
    "rate_limited",
}
#: The answers to a command (each fuzzed user has one socket at a time, so the events every
#: session of the user receives come back to the sender only).
ANSWERS = {
    "pong", "subscription_updated", "notification_marked_read", "error", "notifications_seen",
    "notifications_marked_read", "notification_archived", "notification_unarchived",
    "notification_deleted", "counts", "preferences_updated",
}  # fmt: skip
UNSOLICITED = {"notification", "heartbeat", "notification_marked_read"}
FUZZ_USER = "fuzzed"
CONTROL_USER = "control"

pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 10))


# --- what is sent ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Send:
    """One frame, and what it must get: an answer message, a pong frame, or a close code."""

    data: bytes
    answer: bool = False
    pong: bool = False
    closes: int | None = None

    def __repr__(self) -> str:  # short: Hypothesis prints failing scripts
        expect = f"closes={self.closes}" if self.closes else "pong" if self.pong else "answer"
        return f"Send({self.data[:80]!r}{'…' if len(self.data) > 80 else ''}, {expect})"


def text_frame(payload: bytes) -> Send:
    if len(payload) > MAX_MESSAGE_BYTES:
        return Send(frame(TEXT, payload), closes=1009)
    return Send(frame(TEXT, payload), answer=True)


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
type_names = st.text(max_size=70) | st.sampled_from(["a", "b", "note", "é" * 64, "x" * 65, ""])
type_lists = st.lists(type_names, max_size=8) | st.integers(95, 110).map(
    lambda n: [f"t{i}" for i in range(n)]  # around the bound of 100 types per filter
)
muted_lists = st.lists(type_names, max_size=8) | st.integers(250, 260).map(
    lambda n: [f"t{i}" for i in range(n)]  # around the bound of 256 muted types
)
commands = st.one_of(
    st.fixed_dictionaries({"type": st.just("ping")}, optional={"extra": values}),
    st.fixed_dictionaries(
        {"type": st.just("mark_read")},
        optional={"notification_id": st.integers(-5, 2**64) | values},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe"])},
        optional={"notification_types": type_lists | values},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["archive", "unarchive", "delete"])},
        optional={"notification_id": st.integers(-5, 2**64) | values},
    ),
    st.fixed_dictionaries(
        {"type": st.just("mark_seen")}, optional={"up_to_id": st.integers(-5, 2**64) | values}
    ),
    st.fixed_dictionaries(
        {"type": st.just("mark_all_read")},
        optional={
            "notification_type": type_names | values,
            "up_to_id": st.integers(-5, 2**64) | values,
        },
    ),
    st.fixed_dictionaries({"type": st.just("get_counts")}, optional={"extra": values}),
    st.fixed_dictionaries(
        {"type": st.just("update_preferences")},
        optional={"muted_types": muted_lists | values},
    ),
    st.fixed_dictionaries({"type": st.text(max_size=12) | values}),
    st.dictionaries(st.text(max_size=8), values, max_size=4),
)
huge = st.integers(MAX_MESSAGE_BYTES - 40, MAX_MESSAGE_BYTES + 40).map(
    lambda n: text_frame(b'{"type": "ping", "pad": "' + b"x" * n + b'"}')
)
violations = st.sampled_from(
    [
        Send(frame(TEXT, b'{"type": "\xff"}'), closes=1007),
        Send(frame(TEXT, b'"\xed\xa0\x80"'), closes=1007),
        Send(frame(PING, b"p" * 126), closes=1002),
        Send(frame(0x3, b"{}"), closes=1002),
        Send(frame(CONTINUATION, b"{}"), closes=1002),
        Send(frame(PING, b"p", fin=False), closes=1002),
        Send(frame(BINARY, b'{"type": "ping"}'), closes=1003),
    ]
)
answered = st.one_of(
    commands.map(lambda c: text_frame(dumps(c))),
    values.map(lambda v: text_frame(dumps(v))),
    st.text(max_size=40).map(lambda t: text_frame(t.encode())),
    st.binary(max_size=125).map(lambda b: Send(frame(PING, b), pong=True)),
)
#: One script in four ends with a frame that may close the connection.
endings = st.integers(0, 3).flatmap(lambda i: huge | violations if i == 0 else st.none())


@dataclass(frozen=True)
class Script:
    """What one example sends, on a fresh socket or on the last one if it is still open."""

    frames: list[Send]
    ending: Send | None
    fresh: bool
    notify_control: bool
    notify_fuzzed: bool

    @property
    def sent(self) -> list[Send]:
        return [*self.frames, self.ending] if self.ending is not None else self.frames


scripts = st.builds(
    Script,
    st.lists(answered, min_size=1, max_size=6),
    endings,
    st.integers(0, 3).map(lambda i: i == 0),
    st.integers(0, 2).map(lambda i: i == 0),
    st.integers(0, 3).map(lambda i: i == 0),
)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Fuzz:
    """The server, the control session and what was created during the fuzz."""

    loop: asyncio.AbstractEventLoop
    server: ServerProcess
    http: httpx.AsyncClient
    control: Socket
    created: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    examples: int = 0
    socket: RawSocket | None = None  # the fuzzed user's, while open
    opened: int = 0

    @property
    def user(self) -> str:
        """The fuzzed user: one per socket, so that a socket that was dropped without a
        word cannot send anything to the next (marked-read echoes)."""
        return f"{FUZZ_USER}-{self.opened}"

    async def create(self, user: str) -> None:
        response = await self.http.post(
            "/api/v1/notifications", json={"user_id": user, "type": "fuzz", "title": "t"}
        )
        assert response.status_code == 201, response.text
        if user == CONTROL_USER:
            self.created.append(response.json()["id"])

    async def listen(self) -> None:
        """Collect the control session's notifications until it ends."""
        while True:
            message = await self.control.recv(timeout=3600)
            assert message["type"] in UNSOLICITED, message
            if message["type"] == "notification":
                self.received.append(message["notification"]["id"])

    async def play(self, script: Script) -> None:
        self.examples += 1
        raw, self.socket = self.socket, None
        if raw is not None and script.fresh:
            raw.abort()  # a client that just vanishes
            raw = None
        greeted = raw is not None
        if raw is None:
            self.opened += 1
            raw = await RawSocket.open(self.server, user_id=self.user)
        creating = []
        if script.notify_control:
            creating.append(asyncio.ensure_future(self.create(CONTROL_USER)))
        if script.notify_fuzzed:
            creating.append(asyncio.ensure_future(self.create(self.user)))
        try:
            sent = script.sent
            raw.send(b"".join(s.data for s in sent))  # on a fresh socket: before the greeting
            if await self.check_answers(raw, sent, greeted):
                self.socket, raw = raw, None
        finally:
            if raw is not None:
                raw.abort()
            await asyncio.gather(*creating)
        if self.examples % 100 == 0:
            assert (await self.http.get("/healthz")).status_code == 200

    async def check_answers(self, raw: RawSocket, sent: list[Send], greeted: bool) -> bool:
        """Read until every frame of ``sent`` got its answer; whether the socket is open."""
        answers = sum(s.answer for s in sent)
        pongs = sum(s.pong for s in sent)
        closes = sent[-1].closes
        while closes is not None or answers or pongs or not greeted:
            try:
                opcode, payload = await raw.read_frame()
            except asyncio.IncompleteReadError:
                raise AssertionError(f"connection dropped without a close frame: {sent}") from None
            if opcode == PONG:
                pongs -= 1
                continue
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0]
                assert code == closes, (code, sent)
                raw.send(frame(CLOSE, payload[:2]))  # a polite client answers
                await raw.ended()
                return False
            assert opcode == TEXT, (opcode, payload)
            message = orjson.loads(payload)
            kind = message["type"]
            if not greeted:
                assert kind == "connection_established", message
                greeted = True
                continue
            if kind == "error":
                assert message["code"] in ERROR_CODES, message
                assert set(message) == {"type", "code", "message"}, message
            if kind in ANSWERS:
                answers -= 1
                assert answers >= 0, (message, sent)
            else:
                assert kind in UNSOLICITED, message
        assert pongs == 0, sent
        return True

    async def close(self) -> None:
        """A clean close of ours is answered with 1000."""
        raw, self.socket = self.socket, None
        if raw is None:
            return
        raw.send(frame(CLOSE, struct.pack("!H", 1000)))
        try:
            while True:
                opcode, payload = await raw.read_frame()
                if opcode == CLOSE:
                    assert struct.unpack("!H", payload[:2])[0] == 1000
                    break
            await raw.ended()
        finally:
            raw.abort()


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    """One server for the module, on a loop of its own (Hypothesis drives it example by
    example)."""
    loop = asyncio.new_event_loop()
    # On a tmpfs where there is one: each example commits notifications, and fsync on a
    # loaded disk would dominate the run.
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path_factory.mktemp("fuzz")
    db = base / "tidings.db"
    server = ServerProcess("--insecure", database_url=f"sqlite+aiosqlite:///{db}")

    async def start() -> Fuzz:
        await server.start()
        control, _ = await open_socket(server, user_id=CONTROL_USER)
        http = httpx.AsyncClient(base_url=server.http_url, timeout=5.0)
        return Fuzz(loop, server, http, control)

    state = loop.run_until_complete(start())
    listener = loop.create_task(state.listen())
    try:
        yield state
    finally:

        async def stop() -> None:
            if state.socket is not None:
                state.socket.abort()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await state.control.close()
            await state.http.aclose()
            await server.kill()

        loop.run_until_complete(stop())
        loop.close()
        shutil.rmtree(base, ignore_errors=True)


def test_every_frame_gets_a_documented_answer_or_close(fuzz: Fuzz) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(script=scripts)
    def example(script: Script) -> None:
        fuzz.loop.run_until_complete(asyncio.wait_for(fuzz.play(script), 30))

    example()

    async def control_got_everything() -> None:
        await fuzz.close()

        async def all_arrived() -> bool:
            return len(fuzz.received) >= len(fuzz.created)

        await until(all_arrived, within=10)
        assert fuzz.received == sorted(fuzz.created)
        assert (await fuzz.http.get("/healthz")).status_code == 200

    fuzz.loop.run_until_complete(control_got_everything())
    assert fuzz.examples >= EXAMPLES
