"""The load generator: one process (uvloop) that drives one server through the phases of a spec.

Started by ``bench.run`` as its own process (``python -m bench.loadgen --spec JSON``);
prints one JSON object per phase on stdout. One process is enough on a 2-core machine:
the server under test needs the other core, and the client's own CPU share is reported
(``loadgen_cpu``) so that a client-bound figure can be told from a server-bound one.

Clients, by ``spec["kind"]``:

* ``ws`` — the WebSocket references (``/ws?id=ID``, control socket ``/control``);
* ``socketio`` — engine.io v4 / socket.io v5 spoken directly over ``websockets``
  (the python-socketio client costs far more per message than the server it measures);
* ``grpc_raw`` — grpc.aio ``/bench.Bench/Subscribe`` streams, bytes in and out;
* ``tidings_ws`` — ``/api/v1/ws/notifications?user_id=ID`` (insecure mode), docs/PROTOCOL.md §5;
* ``tidings_grpc`` — ``NotificationStream.Connect`` with metadata ``x-tidings-user``.

Every WebSocket client is ``websockets`` with ``compression=None`` or, with
``spec["deflate"]``, the library's default permessage-deflate offer. Producers for
Tidings are the gRPC admin calls (``BroadcastNotification`` with ``all``,
``CreateNotification``); REST is measured by the ``rest`` phase.

Phases: ``connect`` (connect rate, then idle RSS per session), ``fanout`` (sequential
broadcasts, unloaded latency), ``broadcast`` (a window of broadcasts in flight:
deliveries/s, server CPU per delivery, latency under load, longest gap between two
deliveries), ``targeted`` (one client per message at a fixed rate), ``backlog``
(reconnect with queued notifications; Tidings only) and ``rest`` (REST creates;
Tidings only). Every wait is bounded; the process ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect

PAYLOAD_BYTES = 256
#: Tidings notification body: the message text (the frame around it adds ~250 bytes).
TIDINGS_MESSAGE = "m" * 200

Spec = dict[str, Any]
Result = dict[str, Any]


# --- measuring the server -------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread group of ``pid``: ``main`` (the event loop), ``py-other``
    (other Python threads, e.g. aiosqlite's), and native threads by name (gRPC's)."""
    groups: defaultdict[str, float] = defaultdict(float)
    task_dir = Path(f"/proc/{pid}/task")
    main_comm = (task_dir / str(pid) / "comm").read_text().strip()
    for tid_dir in task_dir.iterdir():
        try:
            comm = (tid_dir / "comm").read_text().strip()
            # schedstat: nanoseconds on CPU (stat's utime/stime are in 10 ms ticks)
            seconds = int((tid_dir / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        if tid_dir.name == str(pid):
            name = "main"
        elif comm == main_comm:
            name = "py-other"
        else:
            name = comm.rstrip("0123456789-_") or comm
        groups[name] += seconds
    return dict(groups)


HZ = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, from ``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / HZ


class Meter:
    """Server CPU (total and per thread group), client CPU and everybody else's CPU
    (``foreign_cpu``: the machine's busy time less server and load generator, in cores —
    other people's work on a shared machine) over an interval."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = time.perf_counter()
        self.client = time.process_time()
        self.threads = thread_cpu(pid)
        self.busy = machine_busy()

    def stop(self, end: float | None = None) -> dict[str, Any]:
        """The figures since the meter started (``end``: wall end if known)."""
        wall = (end or time.perf_counter()) - self.wall
        threads = thread_cpu(self.pid)
        deltas = {k: threads.get(k, 0.0) - self.threads.get(k, 0.0) for k in threads}
        server = sum(deltas.values())
        wall = max(wall, 1e-9)
        return {
            "seconds": round(wall, 4),
            "server_cpu_s": round(server, 4),
            "server_cpu": round(server / wall, 3),
            "server_threads": {
                k: round(v / wall, 3) for k, v in sorted(deltas.items(), key=lambda kv: -kv[1])
            },
            "loadgen_cpu": round((time.process_time() - self.client) / wall, 3),
        }


def pct(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def latency_fields(prefix: str, values: list[float]) -> dict[str, Any]:
    return {
        f"{prefix}_p50_ms": ms(pct(values, 50)),
        f"{prefix}_p99_ms": ms(pct(values, 99)),
        f"{prefix}_max_ms": ms(max(values) if values else None),
    }


# --- what arrives ---------------------------------------------------------------------


class Inbox:
    """A worker's deliveries: receive times and latencies, and per-trigger completion.

    A tag is ``"<seq>:<want> <perf_counter at send>"``: ``want`` deliveries of ``seq``
    complete it in this worker, 0 meaning one per client the worker holds (a broadcast).
    ``perf_counter`` is CLOCK_MONOTONIC on Linux, the same clock in every process.
    """

    def __init__(self, report: Callable[[int, float], None]) -> None:
        self.report = report
        self.local = 0
        self.counts: defaultdict[int, int] = defaultdict(int)
        self.recv: list[float] = []
        self.lat: list[float] = []
        self.want: list[int] = []

    def hit(self, tag: str) -> None:
        """One delivery."""
        now = time.perf_counter()
        head, _, sent = tag.partition(" ")
        seq_text, _, want_text = head.partition(":")
        seq = int(seq_text)
        want = int(want_text)
        self.recv.append(now)
        self.lat.append(now - float(sent))
        self.want.append(want)
        count = self.counts[seq] + 1
        self.counts[seq] = count
        if count == (want or self.local):
            self.report(seq, now)

    def collect(self) -> dict[str, Any]:
        """What arrived since the last collect."""
        got = {"recv": self.recv, "lat": self.lat, "want": self.want}
        self.recv, self.lat, self.want = [], [], []
        return got


def tag_for(seq: int, want: int = 0) -> str:
    """The tag of trigger ``seq``: complete after ``want`` deliveries per worker (0: all)."""
    return f"{seq}:{want} {time.perf_counter():.6f}"


def padded(tag: str) -> str:
    """A payload of exactly ``PAYLOAD_BYTES`` bytes starting with ``tag`` and a space."""
    return (tag + " ").ljust(PAYLOAD_BYTES, "x")


# --- clients --------------------------------------------------------------------------


class Client:
    """One connected session; its reader task feeds the recorder."""

    hello_at: float = 0.0
    hello: Any = None

    async def close(self) -> None:
        raise NotImplementedError


class Target:
    """How to connect clients to one kind of server and how to make it send."""

    def __init__(self, spec: Spec, inbox: Inbox | None = None) -> None:
        self.spec = spec
        self.rec = inbox or Inbox(lambda seq, t: None)
        self.readers: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Prepare the producer side (control socket, admin channel)."""

    async def connect(self, uid: str) -> Client:
        raise NotImplementedError

    async def broadcast(self, tag: str) -> None:
        raise NotImplementedError

    async def send(self, uid: str, tag: str) -> None:
        raise NotImplementedError

    def negotiated(self, client: Client) -> str | None:
        """The WebSocket extensions the server accepted (None: not a WebSocket)."""
        return None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)


class WsClient(Client):
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2)


class WsTarget(Target):
    """Shared by the WebSocket kinds: connect with or without permessage-deflate."""

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "compression": "deflate" if self.spec.get("deflate") else None,
            "max_size": None,
            "max_queue": None,
            "ping_interval": None,
            "open_timeout": 30,
            "close_timeout": 2,
        }

    def negotiated(self, client: Client) -> str | None:
        assert isinstance(client, WsClient)
        response = client.ws.response
        header = response.headers.get("Sec-WebSocket-Extensions") if response else None
        return header or "none"


class RefWsTarget(WsTarget):
    """``ws_raw``, ``quart_ws``, ``fastapi_ws``."""

    control: ClientConnection

    async def open(self) -> None:
        self.control = await connect(f"{self.spec['ws_url']}/control", compression=None)

    async def connect(self, uid: str) -> Client:
        ws = await connect(f"{self.spec['ws_url']}/ws?id={uid}", **self._connect_kwargs())
        client = WsClient(ws)
        async with asyncio.timeout(30):
            client.hello = await ws.recv()
        client.hello_at = time.perf_counter()
        self._spawn(self._read(ws))
        return client

    async def _read(self, ws: ClientConnection) -> None:
        hit = self.rec.hit
        with contextlib.suppress(Exception):
            async for message in ws:
                assert isinstance(message, str)
                hit(message[: message.index(" ", message.index(" ") + 1)])

    async def broadcast(self, tag: str) -> None:
        await self.control.send("B" + padded(tag))

    async def send(self, uid: str, tag: str) -> None:
        await self.control.send(f"T{uid} {padded(tag)}")


class SocketIoTarget(WsTarget):
    """python-socketio, spoken as engine.io v4 text packets over a WebSocket."""

    control: ClientConnection

    def _url(self) -> str:
        return f"{self.spec['ws_url']}/socket.io/?EIO=4&transport=websocket"

    async def _open(self, uid: str, **kwargs: Any) -> tuple[ClientConnection, str]:
        ws = await connect(self._url(), **kwargs)
        async with asyncio.timeout(30):
            opened = await ws.recv()  # 0{"sid": ..., "pingInterval": ...}
            assert isinstance(opened, str) and opened.startswith("0"), opened
            await ws.send("40" + json.dumps({"id": uid}))
            while True:
                packet = await ws.recv()
                assert isinstance(packet, str)
                if packet.startswith("42"):
                    return ws, packet
                if packet == "2":
                    await ws.send("3")

    async def open(self) -> None:
        self.control = await connect(self._url(), compression=None, ping_interval=None)
        async with asyncio.timeout(30):
            await self.control.recv()
            await self.control.send('40{"id": "control"}')
            while not str(await self.control.recv()).startswith("40"):
                pass
        self._spawn(self._pong(self.control))

    async def _pong(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for packet in ws:
                if packet == "2":
                    await ws.send("3")

    async def connect(self, uid: str) -> Client:
        ws, hello = await self._open(uid, **self._connect_kwargs())
        client = WsClient(ws)
        client.hello, client.hello_at = hello, time.perf_counter()
        self._spawn(self._read(ws))
        return client

    async def _read(self, ws: ClientConnection) -> None:
        hit = self.rec.hit
        with contextlib.suppress(Exception):
            async for packet in ws:
                assert isinstance(packet, str)
                if packet.startswith('42["msg","'):
                    body = packet[10:]
                    hit(body[: body.index(" ", body.index(" ") + 1)])
                elif packet == "2":
                    await ws.send("3")

    async def broadcast(self, tag: str) -> None:
        await self.control.send("42" + json.dumps(["broadcast", padded(tag)]))

    async def send(self, uid: str, tag: str) -> None:
        await self.control.send("42" + json.dumps(["target", [uid, padded(tag)]]))


class TidingsProducer:
    """The gRPC admin service: broadcasts to everyone and single creates."""

    def __init__(self, grpc_addr: str) -> None:
        self.channel = grpc.aio.insecure_channel(grpc_addr)
        self.admin = admin_pb2_grpc.NotificationAdminServiceStub(self.channel)

    async def broadcast(self, tag: str) -> None:
        await self.admin.BroadcastNotification(
            admin_pb2.BroadcastNotificationRequest(
                all=True, type="bench", title=tag, message=TIDINGS_MESSAGE
            ),
            timeout=120,
        )

    async def send(self, uid: str, tag: str) -> None:
        await self.admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(
                user_id=uid, type="bench", title=tag, message=TIDINGS_MESSAGE
            ),
            timeout=60,
        )


class TidingsWsTarget(WsTarget):
    """Browser path: WebSocket → bridge → engine."""

    producer: TidingsProducer

    async def open(self) -> None:
        self.producer = TidingsProducer(self.spec["grpc_addr"])

    async def connect(self, uid: str) -> Client:
        url = f"{self.spec['ws_url']}/api/v1/ws/notifications?user_id={uid}"
        ws = await connect(url, **self._connect_kwargs())
        client = WsClient(ws)
        async with asyncio.timeout(30):
            while True:
                frame = orjson.loads(await ws.recv())
                if frame["type"] == "connection_established":
                    break
        client.hello, client.hello_at = frame, time.perf_counter()
        self._spawn(self._read(ws))
        return client

    async def _read(self, ws: ClientConnection) -> None:
        hit = self.rec.hit
        loads = orjson.loads
        with contextlib.suppress(Exception):
            async for message in ws:
                frame = loads(message)
                if frame["type"] == "notification":
                    hit(frame["notification"]["title"])

    async def broadcast(self, tag: str) -> None:
        await self.producer.broadcast(tag)

    async def send(self, uid: str, tag: str) -> None:
        await self.producer.send(uid, tag)


class GrpcClient(Client):
    def __init__(self, call: Any, channel: grpc.aio.Channel | None) -> None:
        self.call = call
        self.channel = channel

    async def close(self) -> None:
        self.call.cancel()
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await self.channel.close()


class GrpcTargetBase(Target):
    """One channel (one HTTP/2 connection) per session, like separate native clients."""

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.spec["grpc_addr"])


def _identity(data: bytes) -> bytes:
    return data


class GrpcRawTarget(GrpcTargetBase):
    """The grpc.aio reference."""

    async def open(self) -> None:
        channel = self._channel()
        self._broadcast = channel.unary_unary(
            "/bench.Bench/Broadcast", request_serializer=_identity, response_deserializer=_identity
        )
        self._send = channel.unary_unary(
            "/bench.Bench/Send", request_serializer=_identity, response_deserializer=_identity
        )

    async def connect(self, uid: str) -> Client:
        channel = self._channel()
        call = channel.unary_stream(
            "/bench.Bench/Subscribe", request_serializer=_identity, response_deserializer=_identity
        )(uid.encode())
        client = GrpcClient(call, channel)
        async with asyncio.timeout(30):
            client.hello = await call.read()
        client.hello_at = time.perf_counter()
        self._spawn(self._read(call))
        return client

    async def _read(self, call: Any) -> None:
        hit = self.rec.hit
        with contextlib.suppress(Exception):
            while True:  # read(), as for the greeting: grpc.aio forbids mixing it with async for
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                text = message.decode()
                hit(text[: text.index(" ", text.index(" ") + 1)])

    async def broadcast(self, tag: str) -> None:
        await self._broadcast(padded(tag).encode(), timeout=60)

    async def send(self, uid: str, tag: str) -> None:
        await self._send(f"{uid}\n{padded(tag)}".encode(), timeout=60)


class TidingsGrpcTarget(GrpcTargetBase):
    """Native path: ``NotificationStream.Connect``."""

    producer: TidingsProducer

    async def open(self) -> None:
        self.producer = TidingsProducer(self.spec["grpc_addr"])

    async def connect(self, uid: str) -> Client:
        channel = self._channel()
        call = stream_pb2_grpc.NotificationStreamStub(channel).Connect(
            metadata=(("x-tidings-user", uid),)
        )
        client = GrpcClient(call, channel)
        async with asyncio.timeout(30):
            first = await call.read()
        assert isinstance(first, stream_pb2.ConnectResponse), first
        client.hello, client.hello_at = first, time.perf_counter()
        self._spawn(self._read(call))
        return client

    async def _read(self, call: Any) -> None:
        hit = self.rec.hit
        with contextlib.suppress(Exception):
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    return
                if message.WhichOneof("kind") == "notification":
                    hit(message.notification.notification.title)

    async def broadcast(self, tag: str) -> None:
        await self.producer.broadcast(tag)

    async def send(self, uid: str, tag: str) -> None:
        await self.producer.send(uid, tag)


TARGETS: dict[str, type[Target]] = {
    "ws": RefWsTarget,
    "socketio": SocketIoTarget,
    "grpc_raw": GrpcRawTarget,
    "tidings_ws": TidingsWsTarget,
    "tidings_grpc": TidingsGrpcTarget,
}


# --- phases ---------------------------------------------------------------------------


async def post_creates(
    base_url: str, indices: list[int], concurrency: int, seconds: float
) -> dict[str, Any]:
    """``POST /api/v1/notifications`` for each index (user ``p{i % 100}``), ``concurrency``
    at a time, on keep-alive connections; aiohttp when installed (several times cheaper per
    request than httpx, which is the fallback)."""
    body = {"type": "bench", "title": "rest", "message": TIDINGS_MESSAGE}
    times: list[float] = []
    errors: list[str] = []
    pending = iter(indices)
    deadline = time.perf_counter() + seconds
    url = f"{base_url}/api/v1/notifications"
    if importlib.util.find_spec("aiohttp") is not None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:

            async def one_aiohttp() -> None:
                for i in pending:
                    if time.perf_counter() > deadline:
                        return
                    started = time.perf_counter()
                    async with http.post(url, json={**body, "user_id": f"p{i % 100}"}) as answer:
                        text = await answer.read()
                        if answer.status == 201:
                            times.append(time.perf_counter() - started)
                        else:
                            errors.append(f"{answer.status} {text[:100]!r}")

            await asyncio.gather(*(one_aiohttp() for _ in range(concurrency)))
        return {"times": times, "errors": errors, "client": "aiohttp"}
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one_httpx() -> None:
            for i in pending:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                answer = await client.post(url, json={**body, "user_id": f"p{i % 100}"})
                if answer.status_code == 201:
                    times.append(time.perf_counter() - started)
                else:
                    errors.append(f"{answer.status_code} {answer.text[:100]}")

        await asyncio.gather(*(one_httpx() for _ in range(concurrency)))
    return {"times": times, "errors": errors, "client": "httpx"}


class Worker:
    """A worker process: holds clients, reports completions, answers commands.

    Commands arrive on stdin as JSON lines ``{"id", "cmd", …}``; answers go to stdout as
    ``{"re": id, …}``, completions as ``{"done": seq, "t": time}``.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.inbox = Inbox(self._done)
        self.target = TARGETS[spec["kind"]](spec, self.inbox)
        self.clients: dict[str, Client] = {}

    def _out(self, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def _done(self, seq: int, at: float) -> None:
        self._out({"done": seq, "t": at})

    async def connect(self, uids: list[str], concurrency: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: list[str] = []
        hellos: dict[str, tuple[float, int]] = {}

        async def one(uid: str) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    client = await self.target.connect(uid)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                times.append(time.perf_counter() - started)
                self.clients[uid] = client
                self.inbox.local = len(self.clients)
                hellos[uid] = (client.hello_at, _queued(client.hello))

        await asyncio.gather(*(one(u) for u in uids))
        first = next(iter(self.clients.values()), None)
        return {
            "times": times,
            "errors": errors,
            "hellos": hellos,
            "extensions": self.target.negotiated(first) if first else None,
        }

    async def close(self, uids: list[str]) -> dict[str, Any]:
        gone = [self.clients.pop(u) for u in uids if u in self.clients]
        self.inbox.local = len(self.clients)
        await asyncio.gather(*(c.close() for c in gone))
        return {"closed": len(gone)}

    async def handle(self, request: dict[str, Any]) -> None:
        cmd = request["cmd"]
        try:
            if cmd == "connect":
                answer = await self.connect(request["uids"], request["concurrency"])
            elif cmd == "close":
                answer = await self.close(request["uids"])
            elif cmd == "collect":
                answer = self.inbox.collect()
            elif cmd == "count":
                answer = {"clients": len(self.clients)}
            elif cmd == "rest_warmup":
                answer = await post_creates(self.spec["http_url"], [0], 1, 30)
            elif cmd == "rest":
                answer = await post_creates(
                    self.spec["http_url"], request["indices"], request["concurrency"],
                    request["seconds"],
                )  # fmt: skip
            else:
                answer = {"error": f"unknown command {cmd}"}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        self._out({"re": request["id"], **answer})

    async def serve(self) -> None:
        """Until stdin closes (the coordinator went away) or ``quit``."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            request = json.loads(line)
            if request["cmd"] == "quit":
                break
            task = asyncio.create_task(self.handle(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


class Pool:
    """The coordinator's view of its worker processes."""

    def __init__(self, spec: Spec, count: int) -> None:
        self.spec = spec
        self.count = count
        self.procs: list[asyncio.subprocess.Process] = []
        self.pumps: list[asyncio.Task[None]] = []
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.waiting: dict[int, tuple[int, list[float], asyncio.Future[float]]] = {}
        self.ids = 0

    async def start(self) -> None:
        for _ in range(self.count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.loadgen", "--worker", "--spec", json.dumps(self.spec),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            )  # fmt: skip
            self.procs.append(proc)
            self.pumps.append(asyncio.create_task(self._pump(proc)))

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if "done" in message:
                entry = self.waiting.get(message["done"])
                if entry is not None:
                    need, times, fut = entry
                    times.append(message["t"])
                    if len(times) >= need and not fut.done():
                        fut.set_result(max(times))
                        del self.waiting[message["done"]]
            elif "re" in message:
                answer = self.answers.pop(message["re"], None)
                if answer is not None and not answer.done():
                    answer.set_result(message)

    async def call(self, worker: int, cmd: str, **fields: Any) -> dict[str, Any]:
        """One command to one worker, and its answer."""
        self.ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[self.ids] = fut
        stdin = self.procs[worker].stdin
        assert stdin is not None
        stdin.write((json.dumps({"id": self.ids, "cmd": cmd, **fields}) + "\n").encode())
        await stdin.drain()
        async with asyncio.timeout(self.spec.get("phase_timeout", 120) + 30):
            return await fut

    async def all(self, cmd: str, **fields: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.call(w, cmd, **fields) for w in range(self.count))))

    def expect(self, seq: int, workers: int) -> asyncio.Future[float]:
        """Resolved (with the latest time) once ``workers`` workers completed ``seq``."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[seq] = (workers, [], fut)
        return fut

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        for pump in self.pumps:
            pump.cancel()


def proc_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` (0 if it is gone)."""
    total = 0.0
    with contextlib.suppress(OSError):
        for tid_dir in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((tid_dir / "schedstat").read_text().split()[0]) / 1e9
    return total


class Run:
    """The coordinator: one server, one spec, the phases in order (one JSON line each).

    Clients live in ``spec["procs"]`` worker processes (uid ``u{i}`` in worker
    ``i % procs``); producing, timing and server measurements happen here.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.pid: int = spec["pid"]
        self.n: int = spec["n"]
        self.target = TARGETS[spec["kind"]](spec)
        self.pool = Pool(spec, max(1, int(spec.get("procs", 2))))
        self.held: list[int] = [0] * self.pool.count
        self.seq = 0
        self.base = {k: spec[k] for k in ("server", "variant", "n") if k in spec}

    @property
    def connected(self) -> int:
        return sum(self.held)

    def busy_workers(self) -> int:
        return sum(1 for h in self.held if h)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def emit(self, phase: str, fields: dict[str, Any]) -> None:
        print(json.dumps({**self.base, "phase": phase, **fields}), flush=True)

    def meter(self) -> Meter:
        meter = Meter(self.pid)
        meter.client = time.process_time() + sum(proc_cpu(p) for p in self.pool.pids())
        return meter

    def stop_meter(self, meter: Meter, end: float | None = None) -> dict[str, Any]:
        busy = machine_busy()
        figures = meter.stop(end)
        client = time.process_time() + sum(proc_cpu(p) for p in self.pool.pids())
        wall = max(1e-9, figures["seconds"])
        figures["loadgen_cpu"] = round((client - meter.client) / wall, 3)
        # /proc/stat counts in 10 ms ticks and the wall may end a little after ``end``:
        # a few hundredths of a core either way is noise.
        foreign = (busy - meter.busy) / wall - figures["server_cpu"] - figures["loadgen_cpu"]
        figures["foreign_cpu"] = round(max(0.0, foreign), 2)
        return figures

    async def _connect(self, uids: list[str], concurrency: int) -> dict[str, Any]:
        """Connect ``uids`` (each in its worker, in parallel); merged answers."""
        per: list[list[str]] = [[] for _ in range(self.pool.count)]
        for uid in uids:
            per[self.owner(uid)].append(uid)
        share = max(1, math.ceil(concurrency / self.pool.count))
        answers = await asyncio.gather(
            *(self.pool.call(w, "connect", uids=per[w], concurrency=share)
              for w in range(self.pool.count) if per[w])
        )  # fmt: skip
        merged: dict[str, Any] = {"times": [], "errors": [], "hellos": {}, "extensions": None}
        for answer in answers:
            merged["times"] += answer.get("times", [])
            merged["errors"] += answer.get("errors", []) + (
                [answer["error"]] if "error" in answer else []
            )
            merged["hellos"].update(answer.get("hellos", {}))
            merged["extensions"] = merged["extensions"] or answer.get("extensions")
        await self._recount()
        return merged

    async def _recount(self) -> None:
        self.held = [int(a.get("clients", 0)) for a in await self.pool.all("count")]

    def owner(self, uid: str) -> int:
        digits = "".join(ch for ch in uid if ch.isdigit())
        return int(digits or 0) % self.pool.count

    async def _collect(self) -> tuple[list[float], list[float]]:
        recv, lat, _ = await self._collect_all()
        return recv, lat

    async def _collect_all(self) -> tuple[list[float], list[float], list[int]]:
        """Receive times, latencies and ``want`` (0: a broadcast) of every delivery since
        the last collect, from every worker."""
        recv: list[float] = []
        lat: list[float] = []
        want: list[int] = []
        for answer in await self.pool.all("collect"):
            recv += answer.get("recv", [])
            lat += answer.get("lat", [])
            want += answer.get("want", [])
        return recv, lat, want

    async def phase_connect(self) -> None:
        """Connect rate, then the idle RSS each session costs."""
        warm = [f"u{i}" for i in range(min(50, self.n))]
        await self._connect(warm, 50)
        for w in range(self.pool.count):
            await self.pool.call(w, "close", uids=warm)
        await self._recount()
        await asyncio.sleep(1.0)
        before = rss_kib(self.pid)
        meter = self.meter()
        got = await self._connect(
            [f"u{i}" for i in range(self.n)], self.spec.get("connect_concurrency", 100)
        )
        figures = self.stop_meter(meter)
        await asyncio.sleep(self.spec.get("settle", 2.0))
        after = rss_kib(self.pid)
        connected = self.connected
        self.emit(
            "connect",
            {
                "connected": connected,
                "connect_per_s": round(connected / figures["seconds"], 1),
                **latency_fields("connect", got["times"]),
                "server_cpu_ms_per_connect": round(
                    1000 * figures["server_cpu_s"] / max(1, connected), 3
                ),
                "rss_before_kib": before,
                "rss_after_kib": after,
                "idle_kib_per_session": round((after - before) / max(1, connected), 2),
                "extensions": got["extensions"],
                "errors": got["errors"][:5],
                "error_count": len(got["errors"]),
                "procs": self.pool.count,
                **{
                    k: figures[k]
                    for k in ("server_cpu", "server_threads", "loadgen_cpu", "foreign_cpu")
                },
            },
        )

    async def _wait(self, futs: list[asyncio.Future[float]], timeout: float) -> float | None:
        """Wait for ``futs`` (bounded); the latest completion time, None on timeout."""
        if not futs:
            return time.perf_counter()
        done, pending = await asyncio.wait(futs, timeout=max(0.1, timeout))
        for fut in pending:
            fut.cancel()
        if pending:
            return None
        return max(f.result() for f in done)

    async def phase_fanout(self) -> None:
        """Broadcasts one at a time: the latency of each delivery, unloaded."""
        count = self.spec.get("fanout", 10)
        await self._collect()
        spreads: list[float] = []
        timeouts = 0
        for _ in range(count):
            seq = self.next_seq()
            fut = self.pool.expect(seq, self.busy_workers())
            tag = tag_for(seq)
            sent = float(tag.split()[1])
            await self.target.broadcast(tag)
            end = await self._wait([fut], timeout=30)
            if end is None:
                timeouts += 1
            else:
                spreads.append(end - sent)
            await asyncio.sleep(0.05)
        _, lat = await self._collect()
        self.emit(
            "fanout",
            {
                "broadcasts": count,
                "deliveries": len(lat),
                "expected": count * self.connected,
                **latency_fields("latency", lat),
                **latency_fields("last_delivery", spreads),
                "timeouts": timeouts,
            },
        )

    async def phase_broadcast(self) -> None:
        """A window of broadcasts in flight: throughput, CPU per delivery, pauses."""
        count = self.spec.get("broadcasts", 20)
        window = self.spec.get("window", 4)
        workers = self.busy_workers()
        deadline = time.perf_counter() + self.spec.get("phase_timeout", 120)
        await self._collect()
        futs: list[asyncio.Future[float]] = []
        triggers: list[asyncio.Task[None]] = []
        meter = self.meter()
        for _ in range(count):
            while sum(1 for f in futs if not f.done()) >= window:
                if time.perf_counter() > deadline:
                    break
                await asyncio.wait(
                    [f for f in futs if not f.done()],
                    return_when=asyncio.FIRST_COMPLETED,
                    timeout=1,
                )
            seq = self.next_seq()
            futs.append(self.pool.expect(seq, workers))
            triggers.append(asyncio.create_task(self.target.broadcast(tag_for(seq))))
        end = await self._wait(futs, timeout=deadline - time.perf_counter())
        figures = self.stop_meter(meter, end)
        trigger_errors = [
            repr(t.exception())[:200] for t in triggers if t.done() and t.exception() is not None
        ]
        for t in triggers:
            t.cancel()
        recv, lat = await self._collect()
        recv.sort()
        gap = max((b - a for a, b in itertools.pairwise(recv)), default=None)
        delivered = len(lat)
        self.emit(
            "broadcast",
            {
                "broadcasts": count,
                "window": window,
                "deliveries": delivered,
                "expected": count * self.connected,
                "complete": end is not None,
                "deliveries_per_s": round(delivered / figures["seconds"], 1),
                "server_us_per_delivery": round(
                    1e6 * figures["server_cpu_s"] / max(1, delivered), 2
                ),
                **latency_fields("latency", lat),
                "max_gap_ms": ms(gap),
                "trigger_errors": trigger_errors[:3],
                "procs": self.pool.count,
                **figures,
            },
        )

    async def phase_targeted(self) -> None:
        """One message to one client at a fixed rate: the producer→receiver latency."""
        rate = self.spec.get("rate", 500)
        seconds = self.spec.get("seconds", 5.0)
        total = int(rate * seconds)
        uids = [f"u{i}" for i in range(self.n)]
        await self._collect()
        futs: list[asyncio.Future[float]] = []
        gate = asyncio.Semaphore(512)
        errors: list[str] = []

        async def one(uid: str, tag: str) -> None:
            async with gate:
                try:
                    await self.target.send(uid, tag)
                except Exception as exc:
                    errors.append(repr(exc)[:200])

        tasks = []
        meter = self.meter()
        begin = time.perf_counter()
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = self.next_seq()
            futs.append(self.pool.expect(seq, 1))
            tasks.append(asyncio.create_task(one(uids[(i * 7919) % len(uids)], tag_for(seq, 1))))
        sent_for = time.perf_counter() - begin
        end = await self._wait(futs, timeout=15)
        figures = self.stop_meter(meter, end)
        for t in tasks:
            t.cancel()
        _, lat = await self._collect()
        self.emit(
            "targeted",
            {
                "rate": rate,
                "sent": total,
                "achieved_rate": round(total / sent_for, 1),
                "delivered": len(lat),
                **latency_fields("latency", lat),
                "server_us_per_message": round(1e6 * figures["server_cpu_s"] / max(1, len(lat)), 2),
                "errors": errors[:3],
                **{
                    k: figures[k]
                    for k in ("server_cpu", "server_threads", "loadgen_cpu", "foreign_cpu")
                },
            },
        )

    async def phase_steady(self) -> None:
        """Steady traffic, well below capacity: ``steady_rate`` targeted messages per second
        and one broadcast every ``steady_every`` seconds. Deliveries then never stop for
        long: the longest gap between two consecutive deliveries (and the slowest targeted
        message) bounds any pause of the server."""
        seconds = self.spec.get("steady_seconds", 8.0)
        rate = self.spec.get("steady_rate", 200)
        every = self.spec.get("steady_every", 1.0)
        total = int(rate * seconds)
        uids = [f"u{i}" for i in range(self.n)]
        workers = self.busy_workers()
        await self._collect()
        futs: list[asyncio.Future[float]] = []
        tasks: list[asyncio.Task[None]] = []
        errors: list[str] = []
        gate = asyncio.Semaphore(512)

        async def produce(job: Awaitable[None]) -> None:
            async with gate:
                try:
                    await job
                except Exception as exc:
                    errors.append(repr(exc)[:200])

        meter = self.meter()
        begin = time.perf_counter()
        next_broadcast = begin + every / 2
        broadcasts = 0
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() >= next_broadcast:
                next_broadcast += every
                broadcasts += 1
                seq = self.next_seq()
                futs.append(self.pool.expect(seq, workers))
                tasks.append(asyncio.create_task(produce(self.target.broadcast(tag_for(seq)))))
            seq = self.next_seq()
            futs.append(self.pool.expect(seq, 1))
            job = self.target.send(uids[(i * 7919) % len(uids)], tag_for(seq, 1))
            tasks.append(asyncio.create_task(produce(job)))
        end = await self._wait(futs, timeout=20)
        figures = self.stop_meter(meter, end)
        for t in tasks:
            t.cancel()
        recv, lat, want = await self._collect_all()
        targeted = [x for x, w in zip(lat, want, strict=False) if w == 1]
        fanned = [x for x, w in zip(lat, want, strict=False) if w == 0]
        recv.sort()
        gap = max((b - a for a, b in itertools.pairwise(recv)), default=None)
        self.emit(
            "steady",
            {
                "seconds": seconds,
                "rate": rate,
                "broadcast_every_s": every,
                "broadcasts": broadcasts,
                "delivered": len(lat),
                "expected": total + broadcasts * self.connected,
                "complete": end is not None,
                "max_gap_ms": ms(gap),
                **latency_fields("targeted", targeted),
                **latency_fields("broadcast", fanned),
                "errors": errors[:3],
                **{
                    k: figures[k]
                    for k in ("server_cpu", "server_threads", "loadgen_cpu", "foreign_cpu")
                },
            },
        )

    async def phase_backlog(self) -> None:
        """Reconnect with ``backlog`` queued notifications: from greeting to the last one."""
        users = self.spec.get("backlog_users", 20)
        depth = self.spec.get("backlog", 100)
        drains: list[float] = []
        greetings: list[float] = []
        queued: list[int] = []
        failures = 0
        gate = asyncio.Semaphore(16)
        for j in range(users):
            uid = f"r{j}"
            tag = tag_for(self.next_seq(), depth)
            seq = int(tag.split(":")[0])

            async def create(uid: str = uid, tag: str = tag) -> None:
                async with gate:
                    await self.target.send(uid, tag)

            await asyncio.gather(*(create() for _ in range(depth)))
            fut = self.pool.expect(seq, 1)
            started = time.perf_counter()
            got = await self._connect([uid], 1)
            if uid not in got["hellos"]:
                failures += 1
                fut.cancel()
                continue
            hello_at, reported = got["hellos"][uid]
            greetings.append(hello_at - started)
            queued.append(reported)
            end = await self._wait([fut], timeout=15)
            if end is None:
                failures += 1
            else:
                drains.append(end - hello_at)
            await self.pool.call(self.owner(uid), "close", uids=[uid])
        await self._recount()
        await self._collect()
        self.emit(
            "backlog",
            {
                "users": users,
                "backlog": depth,
                "queued_reported": sorted(set(queued)),
                **latency_fields("drain", drains),
                **latency_fields("connect", greetings),
                "failures": failures,
            },
        )

    async def phase_rest(self) -> None:
        """``POST /api/v1/notifications`` from every worker, ``rest_concurrency`` in all."""
        total = self.spec.get("rest_requests", 3000)
        concurrency = self.spec.get("rest_concurrency", 32)
        workers = self.pool.count
        budget = self.spec.get("phase_timeout", 120)
        await self.pool.all("rest_warmup")
        meter = self.meter()
        answers = await asyncio.gather(
            *(self.pool.call(w, "rest", indices=list(range(w, total, workers)),
                             concurrency=max(1, concurrency // workers), seconds=budget)
              for w in range(workers))
        )  # fmt: skip
        figures = self.stop_meter(meter)
        times = [t for a in answers for t in a.get("times", [])]
        errors = [e for a in answers for e in [*a.get("errors", []), a.get("error", "")] if e]
        self.emit(
            "rest",
            {
                "store": self.spec.get("store", "sqlite"),
                "requests": total,
                "created": len(times),
                "concurrency": concurrency,
                "client": answers[0].get("client") if answers else None,
                "creates_per_s": round(len(times) / figures["seconds"], 1),
                **latency_fields("latency", times),
                "server_us_per_create": round(
                    1e6 * figures["server_cpu_s"] / max(1, len(times)), 1
                ),
                "errors": errors[:3],
                "error_count": len(errors),
                **figures,
            },
        )

    async def run(self) -> None:
        phases: list[str] = self.spec["phases"]
        await self.pool.start()
        await self.target.open()
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "connect": self.phase_connect,
            "fanout": self.phase_fanout,
            "broadcast": self.phase_broadcast,
            "targeted": self.phase_targeted,
            "steady": self.phase_steady,
            "backlog": self.phase_backlog,
            "rest": self.phase_rest,
        }
        try:
            for phase in phases:
                if phase in ("fanout", "broadcast", "targeted", "steady") and not self.connected:
                    self.emit(phase, {"skipped": "no client connected"})
                    continue
                prefix = self.spec.get("profile")
                spy = None
                if prefix and phase in self.spec.get("profile_phases", ["broadcast"]):
                    native = bool(self.spec.get("profile_native"))
                    out = f"{prefix}-{phase}{'-native' if native else ''}.txt"
                    spy = await start_profiler(self.pid, out, native)
                try:
                    await steps[phase]()
                except Exception as exc:
                    self.emit(phase, {"failed": f"{type(exc).__name__}: {exc}"[:300]})
                finally:
                    if spy is not None:
                        stop_profiler(spy)
        finally:
            await self.pool.stop()


def _queued(hello: Any) -> int:
    if isinstance(hello, dict):
        return int(hello.get("queued", -1))
    if isinstance(hello, stream_pb2.ConnectResponse):
        return hello.connection_established.queued
    return -1


# --- profiling ------------------------------------------------------------------------


async def start_profiler(pid: int, out: str, native: bool = False) -> subprocess.Popen[bytes]:
    """``py-spy record`` on ``pid`` (raw collapsed stacks, per thread) until stopped.

    ``native`` adds C/Cython frames (grpc's cygrpc, uvloop), which needs py-spy to pause
    the process at each sample (slower); otherwise it samples without pausing it.
    """
    spy = Path(sys.executable).parent / "py-spy"
    mode = ["--native", "--rate", "100"] if native else ["--nonblocking", "--rate", "250"]
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once; returns at once)
        [str(spy), "record", "--pid", str(pid), "--format", "raw",
         "--threads", *mode, "--output", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.5)  # attached and sampling
    return proc


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``py-spy`` (it writes its file on SIGINT), bounded."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def main(spec: Spec) -> None:
    """Run every phase of ``spec``, bounded by ``spec["timeout"]`` seconds in all."""
    run = Run(spec)
    try:
        async with asyncio.timeout(spec.get("timeout", 600)):
            await run.run()
    except TimeoutError:
        run.emit("timeout", {"failed": "load generator timed out"})
    finally:
        await run.pool.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="the run as JSON (see bench.run)")
    parser.add_argument("--worker", action="store_true", help="be a client-holding worker")
    options = parser.parse_args()
    spec = json.loads(options.spec)
    import uvloop

    uvloop.run(Worker(spec).serve() if options.worker else main(spec))
    sys.stdout.flush()
    os._exit(0)  # no goodbye to thousands of sockets: the orchestrator kills the server
