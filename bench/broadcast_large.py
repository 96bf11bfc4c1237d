"""A broadcast to 100 000 known users, 1 000 of them online: commit, delivery, pauses, memory.

Starts ``tidings serve --insecure`` (engine and bridge in one process) on a fresh SQLite
file (``--postgres``: a fresh PostgreSQL database), makes ``--users`` users known with
``CreateNotifications`` batches of 1 000 (one notification each, as a producer would),
connects ``--online`` of them with ``NotificationStream.Connect`` (spread over the user
range, ``--per-channel`` streams per HTTP/2 connection), and one *control* session in a
separate process that pings every 25 ms (a session may send
50 messages a second). Then ``POST /api/v1/notifications/broadcast
{"all": true}`` and reports: time to the 201, time until every online session had the
broadcast, the control session's largest ping round trip and largest gap between pongs
while the broadcast ran, the server's RSS before, right after, and ``--settle``
seconds after (from /proc), the server's CPU from the POST until the last delivery
(on PostgreSQL also the CPU of the database's backends over the same span) and its
garbage collections (from its /metrics: per generation, how many, seconds, how many
over 50 ms), and what the broadcast added to the database per recipient (SQLite: pages
in use, WAL included; PostgreSQL: the notification tables with their indexes and TOAST),
measured before the broadcast and ``--settle`` seconds after. ``--profile FILE``
``py-spy record``s the server (raw collapsed stacks, per thread) over the same span.

    .venv/bin/python bench/broadcast_large.py [--users 100000] [--online 1000] [--postgres]
        [--profile server.txt]

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

PG = "postgresql://postgres@127.0.0.1:5432/test"
TITLE = "the big one"


def sqlite_bytes(path: Path) -> int:
    """Bytes of the pages in use (the WAL's newer pages included; free pages not)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        pages, size, free = (
            conn.execute(f"PRAGMA {pragma}").fetchone()[0]
            for pragma in ("page_count", "page_size", "freelist_count")
        )
    return int((pages - free) * size)


async def postgres_bytes(database: str) -> int:
    """Bytes of the notification tables, indexes and TOAST included."""
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        return int(
            await conn.fetchval(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relname IN ('notifications', 'contents') AND c.relkind = 'r' "
                "AND c.relnamespace = 'public'::regnamespace"
            )
        )
    finally:
        await conn.close()


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def postgres_cpu_seconds(database: str) -> float:
    """CPU of the PostgreSQL backends connected to ``database`` (this one's excepted), from
    /proc: the database's side of the work, less sensitive to a shared machine than time."""
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    total = 0.0
    for (pid,) in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            total += cpu_seconds(pid)
    return total


GC_LINE = re.compile(
    r'^tidings_gc_pause_seconds_(count|sum|bucket)\{generation="(\d)"(?:,le="([^"]+)")?\} (\S+)$'
)


def gc_pauses(http_url: str) -> dict[str, float]:
    """The server's garbage collections so far (its /metrics): ``gen<N>_count``,
    ``gen<N>_s`` (seconds in all) and ``gen<N>_over_50ms``."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if m := GC_LINE.match(line):
            kind, gen, le, value = m.groups()
            if kind == "count":
                found[f"gen{gen}_count"] = float(value)
            elif kind == "sum":
                found[f"gen{gen}_s"] = float(value)
            elif le == "0.05":
                found[f"gen{gen}_upto_50ms"] = float(value)
    for gen in range(3):
        count = found.get(f"gen{gen}_count", 0.0)
        found[f"gen{gen}_over_50ms"] = count - found.pop(f"gen{gen}_upto_50ms", count)
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# --- the control session, in its own process so that the bench's readers cannot delay it ---


def pinger(addr: str, every: float, conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_ping(addr, every, conn))


async def _ping(addr: str, every: float, conn: multiprocessing.connection.Connection) -> None:
    """Ping until told to stop; send back ``[(sent, rtt), ...]`` (perf_counter seconds)."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call: Any = stream_pb2_grpc.NotificationStreamStub(channel).Connect(
            metadata=(("x-tidings-user", "zz-control"),)
        )
        hello = await call.read()
        for _ in range(hello.connection_established.queued):
            await call.read()
        pongs: asyncio.Queue[float] = asyncio.Queue()

        async def read() -> None:
            while (message := await call.read()) is not grpc.aio.EOF:
                if message.WhichOneof("kind") in ("pong", "error"):  # error: rate_limited
                    pongs.put_nowait(time.perf_counter())

        reader = asyncio.create_task(read())
        conn.send("ready")
        samples: list[tuple[float, float]] = []
        ping = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
        while not conn.poll():
            sent = time.perf_counter()
            await call.write(ping)
            async with asyncio.timeout(30):
                samples.append((sent, await pongs.get() - sent))
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - sent)))
        reader.cancel()
        call.cancel()
        conn.send(samples)


# --- the run --------------------------------------------------------------------------------


def post_broadcast(http_url: str, title: str = TITLE) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"all": True, "type": "bench", "title": title, "message": "m" * 200})
    request = urllib.request.Request(
        f"{http_url}/api/v1/notifications/broadcast",
        data=body.encode(),
        headers={"Content-Type": "application/json", "X-Tidings-User": "ops"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status, json.loads(answer.read())


async def register(addr: str, users: list[str], batch: int) -> None:
    async with grpc.aio.insecure_channel(addr) as channel:
        admin = admin_pb2_grpc.NotificationAdminServiceStub(channel)
        chunks = [users[i : i + batch] for i in range(0, len(users), batch)]
        lanes = asyncio.Semaphore(4)

        async def send(chunk: list[str]) -> None:
            async with lanes:
                await admin.CreateNotifications(
                    admin_pb2.CreateNotificationsRequest(
                        notifications=[
                            admin_pb2.CreateNotificationRequest(
                                user_id=u, type="welcome", title="hello", message="m" * 50
                            )
                            for u in chunk
                        ]
                    ),
                    timeout=120,
                )

        await asyncio.gather(*(send(c) for c in chunks))


async def run(args: argparse.Namespace) -> dict[str, object]:
    database = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            database = f"tidings_bench_{uuid.uuid4().hex[:12]}"
            admin_conn = await asyncpg.connect(PG)
            await admin_conn.execute(f'CREATE DATABASE "{database}"')
            await admin_conn.close()
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'tidings.db'}"

        async def db_bytes() -> int:
            if database is not None:
                return await postgres_bytes(database)
            return await asyncio.to_thread(sqlite_bytes, Path(tmp) / "tidings.db")

        server = await ServerProcess("--insecure", database_url=url).start()
        assert server.proc is not None
        pid = server.proc.pid
        channels: list[grpc.aio.Channel] = []
        readers: list[asyncio.Task[None]] = []
        control: multiprocessing.process.BaseProcess | None = None
        spy: asyncio.subprocess.Process | None = None
        try:
            users = [f"u{i:06d}" for i in range(args.users)]
            t = time.perf_counter()
            await register(server.grpc_addr, users, args.batch)
            register_s = time.perf_counter() - t

            step = max(1, args.users // args.online)
            online = users[::step][: args.online]
            arrived: dict[str, float] = {}
            all_arrived = asyncio.Event()
            awaited = [TITLE]  # the title of the broadcast being waited for

            async def read(user: str, call: Any) -> None:
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                    while (message := await call.read()) is not grpc.aio.EOF:
                        kind = message.WhichOneof("kind")
                        if kind == "notification" and (
                            message.notification.notification.title == awaited[0]
                        ):
                            arrived[user] = time.perf_counter()
                            if len(arrived) == len(online):
                                all_arrived.set()

            for i, user in enumerate(online):
                if i % args.per_channel == 0:
                    channels.append(grpc.aio.insecure_channel(server.grpc_addr))
                call: Any = stream_pb2_grpc.NotificationStreamStub(channels[-1]).Connect(
                    metadata=(("x-tidings-user", user),)
                )
                async with asyncio.timeout(30):
                    hello = await call.read()
                    for _ in range(hello.connection_established.queued):
                        await call.read()
                readers.append(asyncio.create_task(read(user, call)))

            ctx = multiprocessing.get_context("spawn")
            here, there = ctx.Pipe()
            control = ctx.Process(target=pinger, args=(server.grpc_addr, args.every, there))
            control.start()
            async with asyncio.timeout(30):
                assert await asyncio.to_thread(here.recv) == "ready"
            await asyncio.sleep(1.0)  # a baseline of pings before the broadcast
            rss_before = rss_mib(pid)
            bytes_before = await db_bytes()
            if args.profile:
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                    "--threads", "--nonblocking", "--rate", "250",
                    "-o", args.profile, "-p", str(pid),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.5)  # attached and sampling

            db_cpu0 = await postgres_cpu_seconds(database) if database else 0.0
            gc0 = await asyncio.to_thread(gc_pauses, server.http_url)
            cpu0 = cpu_seconds(pid)
            t0 = time.perf_counter()
            status, answer = await asyncio.to_thread(post_broadcast, server.http_url)
            t_201 = time.perf_counter() - t0
            rss_after = rss_mib(pid)
            async with asyncio.timeout(120):
                await all_arrived.wait()
            t_all = max(arrived.values()) - t0
            t_first = min(arrived.values()) - t0
            t_end = time.perf_counter()
            cpu = cpu_seconds(pid) - cpu0
            gc1 = await asyncio.to_thread(gc_pauses, server.http_url)
            db_cpu = await postgres_cpu_seconds(database) - db_cpu0 if database else None
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await asyncio.wait_for(spy.wait(), 30)
                spy = None
            await asyncio.sleep(0.5)
            here.send("stop")
            async with asyncio.timeout(30):
                samples: list[tuple[float, float]] = await asyncio.to_thread(here.recv)
            await asyncio.sleep(args.settle)
            rss_settled = rss_mib(pid)
            bytes_added = await db_bytes() - bytes_before
            rss_again: list[float] = []
            for k in range(args.again):  # the same broadcast again: does memory keep growing?
                arrived.clear()
                all_arrived.clear()
                awaited[0] = f"{TITLE} #{k + 2}"
                await asyncio.to_thread(post_broadcast, server.http_url, awaited[0])
                async with asyncio.timeout(120):
                    await all_arrived.wait()
                await asyncio.sleep(args.settle)
                rss_again.append(rss_mib(pid))
        except BaseException:
            print("\n".join(server.log[-40:]), file=sys.stderr)
            raise
        finally:
            if spy is not None and spy.returncode is None:
                spy.kill()
                await spy.wait()
            if control is not None:
                control.join(10)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for channel in channels:
                await channel.close()
            await server.stop()
            if database is not None:
                admin_conn = await asyncpg.connect(PG)
                await admin_conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin_conn.close()

    during = [(s, rtt) for s, rtt in samples if t0 - 0.01 <= s <= t_end]
    before = [rtt for s, rtt in samples if s < t0]
    pong_times = sorted(s + rtt for s, rtt in samples)
    gaps = [b - a for a, b in itertools.pairwise(pong_times) if t0 <= b and a <= t_end]
    return {
        "store": "postgres" if args.postgres else "sqlite",
        "known_users": args.users + 1,  # and the control session
        "online": len(online),
        "register_s": round(register_s, 1),
        "status": status,
        "created": answer.get("created"),
        "to_201_ms": round(t_201 * 1e3),
        "first_delivery_ms": round(t_first * 1e3),
        "all_online_delivered_ms": round(t_all * 1e3),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_recipient": round(cpu * 1e6 / max(1, answer.get("created") or 1), 1),
        "postgres_cpu_us_per_recipient": None
        if db_cpu is None
        else round(db_cpu * 1e6 / max(1, answer.get("created") or 1), 1),
        "control_pings_during": len(during),
        "control_rtt_ms_before_max": round(max(before, default=0.0) * 1e3, 1),
        "control_rtt_ms_during_max": round(max((r for _, r in during), default=0.0) * 1e3, 1),
        "control_pong_gap_ms_max": round(max(gaps, default=0.0) * 1e3, 1),
        "server_gc_during": {k: round(v - gc0.get(k, 0.0), 3) for k, v in gc1.items()},
        "rss_mib_before_after_settled": [rss_before, rss_after, rss_settled],
        "rss_mib_settled_after_each_again": rss_again,
        "db_bytes_per_recipient": round(bytes_added / max(1, answer.get("created") or 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--online", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="users per registering create")
    parser.add_argument("--per-channel", type=int, default=100, help="streams per connection")
    parser.add_argument(
        "--every",
        type=float,
        default=0.025,
        help="control ping interval (s); sessions may send 50 messages/s",
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before the last RSS")
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    parser.add_argument(
        "--again",
        type=int,
        default=0,
        metavar="K",
        help="then K more broadcasts, the RSS settled after each (memory growth per broadcast)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy record the server during the broadcast (raw)"
    )
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
