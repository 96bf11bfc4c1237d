"""Targeted create latency: one paced producer, 1 000 connected browsers, POST → socket.

Starts one fresh ``tidings serve --insecure`` (role all; a SQLite temp file, or a fresh
PostgreSQL database with ``--database postgres``), connects ``--users`` receivers
(browser WebSockets, or gRPC ``Connect`` streams with ``--receivers grpc``) spread over
``--procs`` load processes (uvloop), each greeted before the clock starts, then ONE
producer creates notifications at ``--rate`` per second, one request at a time: the
next only after the answer and not before its scheduled time, each for a random user.
The producer creates over REST (``POST /api/v1/notifications``, one kept-alive HTTP/1.1
connection) or, with ``--via grpc``, with the SDK's ``Publisher.create``.

Latency is from just before the request to the moment that user's receiver has the
frame (``perf_counter``, CLOCK_MONOTONIC, one clock for every process); the title
carries the request's number. Reported: p50/p90/p99/max, the achieved rate, frames not
received, the answers' round trips, the server's CPU in cores (/proc; per thread group
too) and the time its threads waited for a CPU (schedstat), its GC pauses, and the load
processes' and producer's CPU, so that a starved client shows. With ``--peer`` the same
run also measures ``bench/refs/fastapi_durable.py`` (FastAPI + aiosqlite, INSERT + commit
per POST, then a send to the user's sockets); with ``--baseline REF`` Tidings from that
commit's tree (``git archive``) too, ``--rounds`` times alternated; the ratios of this
tree to each are printed.

    .venv/bin/python -m bench.targeted_latency [--rate 500] [--seconds 20] [--warmup 3]
        [--users 1000] [--procs 2] [--via rest|grpc] [--receivers ws|grpc]
        [--database sqlite|postgres] [--peer] [--baseline REF] [--rounds 1]
        [--profile server.json]

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.grpc_create import PG_URL, cpu_seconds, fresh_database
from bench.loadgen import thread_cpu

ROOT = Path(__file__).resolve().parent.parent
HTTP_LISTENING = re.compile(r"http listening on (\S+)")
GRPC_LISTENING = re.compile(r"grpc listening on (\S+)")
MESSAGE = "m" * 200


READY = re.compile(r"^ready (\S+)")


@dataclass
class Server:
    """A server subprocess, its address and its start-up output."""

    proc: asyncio.subprocess.Process
    url: str
    startup: str
    drain: asyncio.Task[None]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self.drain


async def start(argv: list[str], cwd: Path, ready: re.Pattern[str]) -> Server:
    """Start ``argv`` in ``cwd``; returns once it printed a line matching ``ready``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not (found := ready.search(lines[-1] if lines else "")):
                raw = await proc.stdout.readline()
                if not raw:
                    raise RuntimeError("server exited:\n" + "\n".join(lines))
                lines.append(raw.decode(errors="replace").rstrip())
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        raise

    async def drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    task = asyncio.create_task(drain(proc.stdout))
    return Server(proc, f"http://{found.group(1)}", "\n".join(lines), task)


def snapshot(ref: str, into: Path) -> None:
    """The tree of commit ``ref`` extracted into ``into`` (generated code is linked in)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        raise RuntimeError(archive.stderr.decode(errors="replace"))
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)


def waited(pid: int) -> float:
    """Seconds the threads of ``pid`` spent runnable but waiting for a CPU (schedstat)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1]) / 1e9
    return total


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --- receivers (one load process) -------------------------------------------------------


async def _ws_receiver(url: str, user: str, peer: bool, got: dict[int, float]) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(url, open_timeout=30, max_size=None, compression=None)
    async with asyncio.timeout(30):
        hello = await ws.recv()
    if not peer:
        assert orjson.loads(hello)["type"] == "connection_established", hello

    async def read() -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                now = time.perf_counter()
                event = orjson.loads(frame)
                if event.get("type") == "notification":
                    got[int(event["notification"]["title"][1:])] = now

    return ws, asyncio.create_task(read())


async def _grpc_receiver(target: str, user: str, got: dict[int, float]) -> Any:
    import grpc
    from tidings.v1 import stream_pb2, stream_pb2_grpc

    channel = grpc.aio.insecure_channel(target)
    call = stream_pb2_grpc.NotificationStreamStub(channel).Connect(
        metadata=(("x-tidings-user", user),)
    )
    async with asyncio.timeout(30):
        first = await call.read()
    assert isinstance(first, stream_pb2.ConnectResponse), first
    assert first.WhichOneof("kind") == "connection_established", first

    async def read() -> None:
        with contextlib.suppress(Exception):
            while isinstance(message := await call.read(), stream_pb2.ConnectResponse):
                now = time.perf_counter()
                if message.WhichOneof("kind") == "notification":
                    got[int(message.notification.notification.title[1:])] = now

    return channel, asyncio.create_task(read())


async def _receivers(spec: dict[str, Any], conn: Connection) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * 2048)), hard))
    got: dict[int, float] = {}
    held: list[Any] = []
    users: list[str] = spec["users"]
    for i in range(0, len(users), 100):
        batch = users[i : i + 100]
        if spec["receivers"] == "grpc":
            held += await asyncio.gather(*(_grpc_receiver(spec["grpc"], u, got) for u in batch))
        else:
            held += await asyncio.gather(
                *(_ws_receiver(spec["ws"].format(user=u), u, spec["peer"], got) for u in batch)
            )
    cpu0 = time.process_time()
    conn.send("ready")
    await asyncio.to_thread(conn.recv)  # "stop"
    conn.send((got, time.process_time() - cpu0))
    for transport, task in held:
        task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.close(), 5)


def _receiver_main(spec: dict[str, Any], conn: Connection) -> None:
    import uvloop

    uvloop.run(_receivers(spec, conn))


# --- the producer -----------------------------------------------------------------------


Create = Callable[[str, int], Awaitable[None]]


async def paced(
    create: Create, users: list[str], rate: float, seconds: float, first: int
) -> tuple[dict[int, float], list[float], float]:
    """Creates numbered from ``first``, one at a time, the k-th not before ``k / rate`` s,
    for ``seconds`` (a server slower than the rate gets fewer, never a longer run).

    Returns each create's start time by number, the answers' round trips, and the time
    the schedule took.
    """
    sent: dict[int, float] = {}
    answers: list[float] = []
    pick = random.Random(first).choice
    begin = time.perf_counter()
    k = 0
    end = begin + seconds
    while (due := begin + k / rate) < end and time.perf_counter() < end:
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        number = first + k
        user = pick(users)
        sent[number] = time.perf_counter()
        await create(user, number)
        answers.append(time.perf_counter() - sent[number])
        k += 1
    return sent, answers, time.perf_counter() - begin


class Http:
    """One kept-alive HTTP/1.1 connection, one request at a time: the least a client can
    add to a round trip (no dependency; both servers answer with a Content-Length). A new
    connection follows an answer that closes this one (hypercorn does every 1 000)."""

    def __init__(self, url: str) -> None:
        host, port = urlsplit(url).netloc.rsplit(":", 1)
        self._address = (host, int(port))
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
            sock = self._streams[1].get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, writer = self._streams
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        kind = "Content-Type: application/json\r\n" if body else ""
        writer.write(f"{head}{kind}\r\n".encode() + body)
        length, close = 0, False
        async with asyncio.timeout(30):
            status_line = await reader.readline()
            if not status_line:
                raise RuntimeError("the server closed the connection without an answer")
            status = int(status_line.split()[1])
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"transfer-encoding":
                    raise RuntimeError("a chunked answer: not expected here")
            answer = await reader.readexactly(length)
        if close:
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def rest_producer(url: str) -> tuple[Create, Callable[[], Awaitable[None]]]:
    http = Http(url)

    async def create(user: str, number: int) -> None:
        body = {"user_id": user, "type": "bench", "title": f"n{number}", "message": MESSAGE}
        status, answer = await http.request("POST", "/api/v1/notifications", orjson.dumps(body))
        if status != 201:
            raise RuntimeError(f"{status}: {answer[:500]!r}")

    return create, http.close


async def grpc_producer(target: str) -> tuple[Create, Callable[[], Awaitable[None]]]:
    from tidings.client import Publisher

    publisher = Publisher(target, timeout=30.0, retries=0)

    async def create(user: str, number: int) -> None:
        await publisher.create(user, "bench", f"n{number}", message=MESSAGE)

    return create, publisher.close


async def gc_pauses(url: str | None) -> dict[str, tuple[float, float, float]]:
    """Tidings' ``tidings_gc_pause_seconds`` by generation: (count, sum, count > 5 ms)."""
    if url is None:
        return {}
    http = Http(url)
    try:
        text = (await http.request("GET", "/metrics"))[1].decode()
    finally:
        await http.close()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line.startswith("tidings_gc_pause_seconds"):
            continue
        name, value = line.rsplit(" ", 1)
        generation = name.split('generation="', 1)[1].split('"', 1)[0]
        row = out.setdefault(generation, [0.0, 0.0, 0.0, 0.0])
        if name.startswith("tidings_gc_pause_seconds_count"):
            row[0] = float(value)
        elif name.startswith("tidings_gc_pause_seconds_sum"):
            row[1] = float(value)
        elif 'le="0.005"' in name:
            row[3] = float(value)
    return {g: (r[0], r[1], r[0] - r[3]) for g, r in out.items()}


# --- one measured server ----------------------------------------------------------------


async def measure(
    label: str,
    pid: int,
    spec: dict[str, Any],
    producer: Callable[[], Awaitable[tuple[Create, Callable[[], Awaitable[None]]]]],
    args: argparse.Namespace,
    metrics: str | None = None,
) -> dict[str, object]:
    """Connect the receivers, warm up, measure; one JSON row. ``metrics``: Tidings' HTTP
    address, to count its collector's pauses over the window."""
    users = [f"u{i}" for i in range(args.users)]
    context = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for p in range(args.procs):
        mine, theirs = context.Pipe()
        proc = context.Process(
            target=_receiver_main, args=({**spec, "users": users[p :: args.procs]}, theirs)
        )
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    close: Callable[[], Awaitable[None]] | None = None
    try:
        create, close = await producer()  # after the spawns: gRPC dislikes forks
        for pipe in pipes:
            if not await asyncio.to_thread(pipe.poll, 120):
                raise RuntimeError("receivers did not connect in 120 s")
            assert pipe.recv() == "ready"
        await paced(create, users, args.rate, args.warmup, 0)
        spy = None
        if args.profile and label == "tidings":
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"), "record", "--format",
                {".json": "speedscope", ".svg": "flamegraph"}.get(
                    Path(args.profile).suffix, "raw"
                ),
                "-o", args.profile, "-p", str(pid), "--threads", "--rate", "250",
                "--duration", str(int(args.seconds)),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        load0 = os.getloadavg()[0]
        gc0 = await gc_pauses(metrics)
        cpu0, own0 = cpu_seconds(pid), time.process_time()
        threads0, wait0 = thread_cpu(pid), waited(pid)
        sent, answers, elapsed = await paced(create, users, args.rate, args.seconds, 1_000_000)
        cpu, own = cpu_seconds(pid) - cpu0, time.process_time() - own0
        threads1, wait1 = thread_cpu(pid), waited(pid)
        gc1 = await gc_pauses(metrics)
        await asyncio.sleep(0.5)  # the last frames land
        got: dict[int, float] = {}
        client_cpu = 0.0
        for pipe in pipes:
            pipe.send("stop")
            if not await asyncio.to_thread(pipe.poll, 60):
                raise RuntimeError("a receiver process did not answer")
            theirs, spent = pipe.recv()
            got.update(theirs)
            client_cpu += spent
        if spy is not None:
            with contextlib.suppress(ProcessLookupError):
                spy.send_signal(signal.SIGINT)
            await asyncio.wait_for(spy.wait(), 60)
    finally:
        if close is not None:
            await close()
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
    latencies = [(got[n] - t) * 1e3 for n, t in sent.items() if n in got]
    missing = len(sent) - len(latencies)
    row: dict[str, object] = {
        "server": label,
        "via": args.via if label.startswith("tidings") else "rest",
        "receivers": spec["receivers"],
        "database": args.database if label.startswith("tidings") else "sqlite",
        "users": args.users,
        "creates": len(sent),
        "missing": missing,
        "rate_per_s": round(len(sent) / elapsed, 1),
        "p50_ms": round(pct(latencies, 50), 2) if latencies else None,
        "p90_ms": round(pct(latencies, 90), 2) if latencies else None,
        "p99_ms": round(pct(latencies, 99), 2) if latencies else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
        "answer_p50_ms": round(pct(answers, 50) * 1e3, 2),
        "answer_p99_ms": round(pct(answers, 99) * 1e3, 2),
        "server_cpu_cores": round(cpu / elapsed, 3),
        "server_us_cpu_per_create": round(cpu / max(1, len(sent)) * 1e6),
        "server_threads_cores": {
            name: round((spent - threads0.get(name, 0.0)) / elapsed, 3)
            for name, spent in sorted(threads1.items())
            if spent - threads0.get(name, 0.0) > 0.001 * elapsed
        },
        "server_runqueue_wait_us_per_create": round((wait1 - wait0) / max(1, len(sent)) * 1e6),
        "receivers_cpu_cores": round(client_cpu / elapsed, 3),
        "producer_cpu_cores": round(own / elapsed, 3),
        "gc": {
            g: {
                "count": int(c - gc0.get(g, (0, 0, 0))[0]),
                "ms": round((t - gc0.get(g, (0, 0, 0))[1]) * 1e3, 1),
                "over_5ms": int(o - gc0.get(g, (0, 0, 0))[2]),
            }
            for g, (c, t, o) in gc1.items()
        },
        "loadavg_1m_at_start": round(load0, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), flush=True)
    return row


async def tidings(label: str, tree: Path, args: argparse.Namespace) -> dict[str, object]:
    """One fresh ``tidings serve --insecure`` from ``tree`` on a fresh database, measured."""
    async with fresh_database(args.database, args.pg_url) as url:
        server = await start(
            [sys.executable, "-m", "tidingsd.cli", "serve", "--insecure",
             "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
             "--database-url", url],
            tree, HTTP_LISTENING,
        )  # fmt: skip
        try:
            found = GRPC_LISTENING.search(server.startup)
            assert found is not None, server.startup
            grpc_addr = found.group(1)
            spec = {
                "receivers": args.receivers,
                "peer": False,
                "ws": server.url.replace("http://", "ws://")
                + "/api/v1/ws/notifications?user_id={user}",
                "grpc": grpc_addr,
            }
            producer = functools.partial(
                grpc_producer if args.via == "grpc" else rest_producer,
                grpc_addr if args.via == "grpc" else server.url,
            )
            return await measure(label, server.proc.pid, spec, producer, args, server.url)
        finally:
            await server.stop()


async def peer(args: argparse.Namespace) -> dict[str, object]:
    """The durable FastAPI + aiosqlite reference under the same load."""
    with tempfile.TemporaryDirectory() as tmp:
        server: Server = await start(
            [sys.executable, "-m", "bench.refs.fastapi_durable", "--port", "0",
             "--db", str(Path(tmp) / "peer.db")],
            ROOT, READY,
        )  # fmt: skip
        try:
            spec = {
                "receivers": "ws",
                "peer": True,
                "ws": server.url.replace("http://", "ws://") + "/ws?user_id={user}",
                "grpc": "",
            }
            producer = functools.partial(rest_producer, server.url)
            return await measure("fastapi+aiosqlite", server.proc.pid, spec, producer, args)
        finally:
            await server.stop()


def ratios(mine: dict[str, object], theirs: dict[str, object]) -> dict[str, float]:
    """``mine`` / ``theirs`` for the latencies and the CPU per create."""
    return {
        key: round(float(str(mine[key])) / float(str(theirs[key])), 2)
        for key in ("p50_ms", "p99_ms", "answer_p50_ms", "server_us_cpu_per_create")
        if mine.get(key) is not None and theirs.get(key)
    }


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * 2048)), hard))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = [(args.baseline, Path(tmp) / "baseline")] if args.baseline else []
        for ref, tree in trees:
            tree.mkdir()
            snapshot(ref, tree)
        for _ in range(args.rounds):
            for ref, tree in trees:
                rows.append(await tidings(f"tidings@{ref}", tree, args))
            rows.append(await tidings("tidings", ROOT, args))
            if args.peer:
                rows.append(await peer(args))
    by: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by.setdefault(str(row["server"]), []).append(row)
    for n, row in enumerate(by["tidings"]):
        for other, theirs in by.items():
            if other != "tidings":
                print(json.dumps({f"tidings/{other}": ratios(row, theirs[n])}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=500.0, help="creates per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, after warm-up")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at the rate first")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=2, help="receiver processes")
    parser.add_argument("--via", choices=["rest", "grpc"], default="rest")
    parser.add_argument("--receivers", choices=["ws", "grpc"], default="ws")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--peer", action="store_true", help="also fastapi_durable, same load")
    parser.add_argument(
        "--baseline", metavar="REF", help="also Tidings from this commit's tree (git archive)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers N times")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record Tidings (.svg/.json)")
    import uvloop

    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
