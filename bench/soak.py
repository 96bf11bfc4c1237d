"""The soak: many browser and gRPC sessions with traffic for minutes; does anything grow?

``make soak`` (or ``python -m bench.soak --minutes 10``) starts ``tidings serve`` on a
fresh SQLite file and keeps, for the whole run:

* ``--browsers`` WebSocket sessions and ``--grpc`` ``Connect`` streams, every one
  reading all it is sent; each second a few of them leave and come back with ``since``
  (churn: sessions are made and torn down all the time). Every connect resumes, the
  first with ``since=0``: a client's ``since`` says "I have every id up to here", which
  only a client that always resumed can say (docs/PROTOCOL.md §4.4) — one that first
  connected without it and got the queue can hold a gap below its last id;
* creates at ``--rate`` per second to random users among them (gRPC admin calls), a
  broadcast to a list of users every ``--broadcast-every`` seconds, pings.

It samples the server's RSS, open file descriptors and threads, the WAL size and the
``/metrics`` gauges every few seconds. After the warm-up (the first tenth of the run,
at least 30 s) the RSS may grow by at most 5 % or 20 MiB; when every client has left,
sessions and connections must be back to their baseline and every notification a
session was sent must have arrived (checked by id, per session, against the store).
Prints a JSON summary and a Markdown block for docs/RELIABILITY.md; exits 1 when a
bound is not kept. Only loopback traffic; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import websockets
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2_grpc

from bench.loadgen import rss_kib
from bench.run import ServerProc, raise_nofile

ROOT = Path(__file__).resolve().parent.parent
OPS = (("x-tidings-user", "ops"),)
#: Descriptors the server may keep past the baseline once everyone left: its SQLite read
#: pool keeps up to 5 connections (the database file, its WAL and shared memory each)
#: that traffic opened, and closes none of them when idle.
FD_SLACK = 15


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def file_kib(path: Path) -> int:
    try:
        return path.stat().st_size // 1024
    except FileNotFoundError:
        return 0


@dataclass
class Seen:
    """What one user's sessions received, across reconnects."""

    ids: set[int] = field(default_factory=set)
    last: int = 0
    #: The ``since`` of each visit, for explaining a miss.
    visits: list[int] = field(default_factory=list)

    def add(self, nid: int) -> None:
        self.ids.add(nid)
        self.last = max(self.last, nid)


class Soak:
    def __init__(self, args: argparse.Namespace, server: ServerProc, wal: Path) -> None:
        self.args = args
        self.server = server
        self.wal = wal
        self.http = f"http://{server.addrs['http']}"
        self.ws_url = f"ws://{server.addrs['http']}/api/v1/ws/notifications"
        self.channel = grpc.aio.insecure_channel(server.addrs["grpc"])
        self.users = [f"b{i}" for i in range(args.browsers)] + [f"g{i}" for i in range(args.grpc)]
        self.seen = {u: Seen() for u in self.users}
        self.created: dict[str, set[int]] = {u: set() for u in self.users}
        self.stop = asyncio.Event()
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.reconnects = 0

    # --- sessions ------------------------------------------------------------------------

    async def browser(self, user: str) -> None:
        while not self.stop.is_set():
            since = self.seen[user].last
            self.seen[user].visits.append(since)
            url = f"{self.ws_url}?user_id={user}&since={since}"
            try:
                async with (
                    websockets.connect(url, compression=None, max_size=None) as ws,
                    asyncio.timeout_at(self._leave_at()),
                ):
                    async for frame in ws:
                        message = orjson.loads(frame)
                        if message["type"] == "notification":
                            self.seen[user].add(message["notification"]["id"])
            except TimeoutError:
                self.reconnects += 1
            except (OSError, websockets.ConnectionClosed) as exc:
                self.errors.append(f"{user}: {exc!r}")
                await asyncio.sleep(1)

    async def native(self, user: str) -> None:
        stub = stream_pb2_grpc.NotificationStreamStub(self.channel)
        while not self.stop.is_set():
            md = [("x-tidings-user", user)]
            since = self.seen[user].last
            self.seen[user].visits.append(since)
            md.append(("tidings-since", str(since)))
            call = stub.Connect(metadata=md)
            try:
                async with asyncio.timeout_at(self._leave_at()):
                    async for message in call:
                        if message.WhichOneof("kind") == "notification":
                            self.seen[user].add(message.notification.notification.id)
            except TimeoutError:
                self.reconnects += 1
            except grpc.aio.AioRpcError as exc:
                self.errors.append(f"{user}: {exc.code().name}")
                await asyncio.sleep(1)
            finally:
                call.cancel()

    def _leave_at(self) -> float:
        """Sessions stay a random while (mean ``--session-life`` seconds), then come back;
        all leave at the end of the load."""
        life = random.expovariate(1 / self.args.session_life)
        return min(asyncio.get_running_loop().time() + life, self.end_at)

    # --- traffic -------------------------------------------------------------------------

    async def produce(self) -> None:
        admin = admin_pb2_grpc.NotificationAdminServiceStub(self.channel)
        period = 1 / self.args.rate
        next_at = time.monotonic()
        next_broadcast = next_at + self.args.broadcast_every
        while not self.stop.is_set():
            user = random.choice(self.users)
            reply = await admin.CreateNotification(
                admin_pb2.CreateNotificationRequest(
                    user_id=user, type=random.choice(("a", "b", "c")), title="soak",
                    data_json='{"pad": "' + "x" * 200 + '"}',
                ),
                metadata=OPS,
            )  # fmt: skip
            self.created[user].add(reply.notification.id)
            if time.monotonic() >= next_broadcast:
                next_broadcast += self.args.broadcast_every
                await admin.BroadcastNotification(
                    admin_pb2.BroadcastNotificationRequest(
                        user_ids=random.sample(self.users, 50),
                        type="news", title="soak broadcast",
                    ),
                    metadata=OPS,
                )  # fmt: skip
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # --- measuring -----------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.http, timeout=10) as http:
            reply = await http.get(
                "/api/v1/ws/notifications/stats", headers={"X-Tidings-User": "ops"}
            )
        reply.raise_for_status()
        return dict(reply.json())

    async def full_collections(self) -> dict[str, Any]:
        """How many full collections ran and how long they took (``/metrics``)."""
        async with httpx.AsyncClient(base_url=self.http, timeout=10) as http:
            text = (await http.get("/metrics")).text
        buckets: dict[str, float] = {}
        count = total = 0.0
        for line in text.splitlines():
            if not line.startswith("tidings_gc_pause_seconds") or 'generation="2"' not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith("tidings_gc_pause_seconds_bucket"):
                buckets[name.split('le="')[1].split('"')[0]] = float(value)
            elif name.startswith("tidings_gc_pause_seconds_count"):
                count = float(value)
            elif name.startswith("tidings_gc_pause_seconds_sum"):
                total = float(value)
        longest = next((le for le, n in buckets.items() if n >= count), "?")
        return {"count": int(count), "mean_ms": round(total / count * 1000, 1) if count else None,
                "longest_at_most_s": longest}  # fmt: skip

    async def sample(self, phase: str) -> dict[str, Any]:
        pid = self.server.proc.pid if self.server.proc else 0
        stats = await self.stats()
        row = {
            "t": round(time.monotonic() - self.started, 1),
            "phase": phase,
            "rss_kib": rss_kib(pid),
            "fds": fds(pid),
            "threads": threads(pid),
            "wal_kib": file_kib(self.wal),
            "sessions": stats["total_connections"],
            "queued": stats["queued"],
        }
        self.samples.append(row)
        return row

    async def sampler(self) -> None:
        while not self.stop.is_set():
            await self.sample("load")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.args.sample_every):
                    await self.stop.wait()

    async def prime(self) -> None:
        """One create and one visit per transport first, so the baseline already has what
        any traffic opens once (the database's files, the first connections' pools)."""
        admin = admin_pb2_grpc.NotificationAdminServiceStub(self.channel)
        await admin.CreateNotification(
            admin_pb2.CreateNotificationRequest(user_id="prime", type="a", title="prime"),
            metadata=OPS,
        )
        async with websockets.connect(f"{self.ws_url}?user_id=prime", compression=None) as ws:
            await ws.recv()
        call = stream_pb2_grpc.NotificationStreamStub(self.channel).Connect(
            metadata=[("x-tidings-user", "prime")]
        )
        await call.read()
        call.cancel()
        await self.until_idle()

    async def until_idle(self, within: float = 30.0) -> None:
        """Until the server counts no session (it notices departures asynchronously)."""
        async with asyncio.timeout(within):
            while (await self.stats())["total_connections"]:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)

    async def run(self) -> dict[str, Any]:
        self.started = time.monotonic()
        self.end_at = asyncio.get_running_loop().time() + 1e9
        await self.prime()
        baseline = await self.sample("baseline")
        tasks = [asyncio.create_task(self.browser(u)) for u in self.users if u[0] == "b"]
        tasks += [asyncio.create_task(self.native(u)) for u in self.users if u[0] == "g"]
        tasks += [asyncio.create_task(self.produce()), asyncio.create_task(self.sampler())]
        duration = self.args.minutes * 60
        warmup = max(30.0, duration / 10)
        self.end_at = asyncio.get_running_loop().time() + duration + 3
        await asyncio.sleep(warmup)
        warm = await self.sample("warm")
        await asyncio.sleep(duration - warmup)
        end = await self.sample("end")
        collections = await self.full_collections()
        self.stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.channel.close()
        # everyone left: back to the baseline?
        after: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = await self.sample("after")
            if after["sessions"] == 0 and after["fds"] <= baseline["fds"] + FD_SLACK:
                break
            await asyncio.sleep(1)
        misses = await self.missing()
        missing = len(misses)
        growth = end["rss_kib"] - warm["rss_kib"]
        max_wal = max(s["wal_kib"] for s in self.samples)
        checks = {
            "rss growth after warm-up <= 5% or 20 MiB": growth
            <= max(warm["rss_kib"] * 0.05, 20 * 1024),
            "sessions back to 0 after all left": after.get("sessions") == 0,
            "connections (fds) back to baseline": after.get("fds", 1 << 30)
            <= baseline["fds"] + FD_SLACK,
            "threads back to baseline": after.get("threads", 1 << 30) <= baseline["threads"] + 2,
            "WAL <= 64 MiB": max_wal <= 64 * 1024,
            "nothing missed (every created id received by its user)": missing == 0,
        }
        return {
            "command": " ".join(sys.argv),
            "minutes": self.args.minutes,
            "browsers": self.args.browsers,
            "grpc": self.args.grpc,
            "rate": self.args.rate,
            "created": sum(len(c) for c in self.created.values()),
            "reconnects": self.reconnects,
            "client_errors": len(self.errors),
            "baseline": baseline,
            "warm": warm,
            "end": end,
            "after": after,
            "rss_growth_kib": growth,
            "max_wal_kib": max_wal,
            "missing": missing,
            "misses": misses[:20],
            "full_collections": collections,
            "samples": self.samples,
            "checks": checks,
            "ok": all(checks.values()),
        }

    async def missing(self) -> list[dict[str, Any]]:
        """Created for a user (singly) and never received by any of its sessions: after
        the last reconnect with ``since`` every one must have arrived. Each miss comes
        with the ``since`` of the user's visits, to tell why."""

        # a last short visit of every user with since: what is still owed arrives now
        async def visit(user: str) -> None:
            url = f"{self.ws_url}?user_id={user}&since={self.seen[user].last}"
            async with websockets.connect(url, compression=None, max_size=None) as ws:
                hello = orjson.loads(await ws.recv())
                for _ in range(hello["queued"]):
                    message = orjson.loads(await ws.recv())
                    if message["type"] == "notification":
                        self.seen[user].add(message["notification"]["id"])

        async with asyncio.timeout(120):
            for chunk in range(0, len(self.users), 100):
                await asyncio.gather(*(visit(u) for u in self.users[chunk : chunk + 100]))
        return [
            {"user": u, "id": nid, "visits": self.seen[u].visits}
            for u in self.users
            for nid in sorted(self.created[u] - self.seen[u].ids)
        ]


def markdown(result: dict[str, Any]) -> str:
    b, w, e, a = result["baseline"], result["warm"], result["end"], result["after"]
    lines = [
        f"`{result['command']}` — {result['minutes']} min, {result['browsers']} browser + "
        f"{result['grpc']} gRPC sessions, {result['rate']} creates/s, "
        f"{result['created']} created, {result['reconnects']} reconnects, "
        f"{result['client_errors']} client errors",
        "",
        "| | baseline | after warm-up | end of load | all left |",
        "| --- | --- | --- | --- | --- |",
        f"| RSS MiB | {b['rss_kib'] / 1024:.1f} | {w['rss_kib'] / 1024:.1f} | "
        f"{e['rss_kib'] / 1024:.1f} | {a.get('rss_kib', 0) / 1024:.1f} |",
        f"| sessions | {b['sessions']} | {w['sessions']} | {e['sessions']} | {a.get('sessions')} |",
        f"| open fds | {b['fds']} | {w['fds']} | {e['fds']} | {a.get('fds')} |",
        f"| threads | {b['threads']} | {w['threads']} | {e['threads']} | {a.get('threads')} |",
        f"| WAL MiB | {b['wal_kib'] / 1024:.1f} | {w['wal_kib'] / 1024:.1f} | "
        f"{e['wal_kib'] / 1024:.1f} | {a.get('wal_kib', 0) / 1024:.1f} |",
        "",
        f"RSS growth after warm-up: {result['rss_growth_kib'] / 1024:.1f} MiB; "
        f"largest WAL: {result['max_wal_kib'] / 1024:.1f} MiB; missing: {result['missing']}; "
        f"full collections: {result['full_collections']}.",
        "",
    ]
    lines += [f"- {'✔' if ok else '✘'} {name}" for name, ok in result["checks"].items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--browsers", type=int, default=1000)
    p.add_argument("--grpc", type=int, default=200)
    p.add_argument("--rate", type=float, default=100, help="creates per second")
    p.add_argument("--broadcast-every", type=float, default=5.0)
    p.add_argument("--session-life", type=float, default=60.0, help="mean seconds per visit")
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument(
        "--server-module", nargs="+", default=["-m", "tidingsd.cli"],
        help="how to start the server's command line (e.g. a script that traces memory)",
    )  # fmt: skip
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="tidings-soak-") as tmp:
        db = Path(tmp) / "soak.db"
        argv = [
            sys.executable, *args.server_module, "serve", "--insecure",
            "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
            "--database-url", f"sqlite+aiosqlite:///{db}",
        ]  # fmt: skip
        server = await ServerProc(argv, ROOT, {"grpc", "http"}).start()
        try:
            result = await Soak(args, server, Path(f"{db}-wal")).run()
        finally:
            await server.kill()
    print(json.dumps(result, indent=2))
    print()
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
