"""REST create throughput and server CPU per create, with 1 and 16 concurrent clients.

Starts ``tidings serve --insecure`` (engine and bridge in one process, fresh SQLite
file) — from this tree, or with ``--at REF`` from a snapshot of a commit (``git
archive``, read-only), for before/after comparisons — and, for each concurrency,
sends ``POST /api/v1/notifications`` (aiohttp, one connection per client) for
``--seconds`` after a short warm-up. Reports creates/s, latency p50/p99 and the server
process's CPU per create (user + system, all threads, from /proc).

    .venv/bin/python bench/rest_create.py [--clients 1,16] [--seconds 10] [--at REF]

With ``--peer``, the same load also goes to ``bench/refs/fastapi_durable.py`` (FastAPI +
aiosqlite, one INSERT and commit per request, then a send to the user's sockets) and
the ratios Tidings / reference are printed. No client holds a socket here: both answer
once the row is committed. With ``--floor``, the same load also goes to
``bench/refs/quart_create_floor.py`` (Quart on hypercorn answering 201 and storing
nothing): the most creates/s the bridge's HTTP stack can serve with these clients on
this machine, whatever is behind it.

Loopback only; every run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"http listening on (\S+)")
READY = re.compile(r"^ready (\S+)")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def snapshot(ref: str, into: Path) -> None:
    """The tree of commit ``ref`` extracted into ``into`` (generated code is linked in)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        raise RuntimeError(archive.stderr.decode(errors="replace"))
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)


async def load(url: str, clients: int, seconds: float) -> list[float]:
    """Latencies of the creates ``clients`` concurrent clients made in ``seconds``."""
    times: list[float] = []
    end = time.perf_counter() + seconds

    async def client(c: int) -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(url, connector=connector) as http:
            i = 0
            while time.perf_counter() < end:
                body = {"user_id": f"u{c}-{i % 100}", "type": "bench", "title": f"{c}/{i}",
                        "message": "m" * 200}  # fmt: skip
                t0 = time.perf_counter()
                async with http.post("/api/v1/notifications", json=body) as response:
                    await response.read()
                    if response.status != 201:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                times.append(time.perf_counter() - t0)
                i += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    return times


async def start(argv: list[str], cwd: Path, ready: re.Pattern[str]) -> Server:
    """Start a server process; returns once it printed a line matching ``ready``."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not (found := ready.search(lines[-1] if lines else "")):
            raw = await proc.stdout.readline()
            if not raw:
                raise RuntimeError("server exited:\n" + "\n".join(lines))
            lines.append(raw.decode(errors="replace").rstrip())
    drain = asyncio.create_task(_drain(proc.stdout))
    return Server(proc, f"http://{found.group(1)}", "\n".join(lines), drain)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    url: str
    startup: str
    drain: asyncio.Task[None]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 20)
        await self.drain


async def measure(server: Server, label: str, clients: int, seconds: float) -> dict[str, object]:
    await load(server.url, clients, 1.0)  # warm-up
    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    times = await load(server.url, clients, seconds)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server.proc.pid) - cpu0
    row = {
        "server": label,
        "clients": clients,
        "creates": len(times),
        "creates_per_s": round(len(times) / elapsed),
        "p50_ms": round(pct(times, 50) * 1e3, 2),
        "p99_ms": round(pct(times, 99) * 1e3, 2),
        "server_us_cpu_per_create": round(cpu / len(times) * 1e6),
        "server_cpu_cores": round(cpu / elapsed, 2),
    }
    print(json.dumps(row), flush=True)
    return row


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = ROOT
        if args.at:
            tree = Path(tmp) / "tree"
            tree.mkdir()
            snapshot(args.at, tree)
        for clients in [int(c) for c in args.clients.split(",")]:
            db = Path(tmp) / f"tidings-{clients}.db"
            server = await start(
                [sys.executable, "-m", "tidingsd.cli", "serve", "--insecure",
                 "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                 "--database-url", f"sqlite+aiosqlite:///{db}"],
                tree, LISTENING,
            )  # fmt: skip
            path = "in-process" if "in-process" in server.startup else "loopback gRPC"
            try:
                mine = await measure(
                    server, f"tidings ({args.at or 'working tree'}, {path})", clients, args.seconds
                )
            finally:
                await server.stop()
            rows.append(mine)
            if args.floor:
                floor = await start(
                    [sys.executable, "-m", "bench.refs.quart_create_floor", "--port", "0"],
                    ROOT, READY,
                )  # fmt: skip
                try:
                    bare = await measure(
                        floor, "quart+hypercorn, storing nothing", clients, args.seconds
                    )
                finally:
                    await floor.stop()
                rows.append(bare)
                print(
                    json.dumps(
                        {
                            "clients": clients,
                            "tidings/floor creates_per_s": _ratio(mine, bare, "creates_per_s"),
                        }
                    ),
                    flush=True,
                )
            if not args.peer:
                continue
            peer = await start(
                [sys.executable, "-m", "bench.refs.fastapi_durable", "--port", "0",
                 "--db", str(Path(tmp) / f"peer-{clients}.db")],
                ROOT, READY,
            )  # fmt: skip
            try:
                theirs = await measure(peer, "fastapi+aiosqlite", clients, args.seconds)
            finally:
                await peer.stop()
            rows.append(theirs)
            ratios = {
                "clients": clients,
                "tidings/peer creates_per_s": round(
                    int(str(mine["creates_per_s"])) / max(1, int(str(theirs["creates_per_s"]))),
                    2,
                ),
                "tidings/peer us_cpu_per_create": round(
                    int(str(mine["server_us_cpu_per_create"]))
                    / max(1, int(str(theirs["server_us_cpu_per_create"]))),
                    2,
                ),
            }
            print(json.dumps(ratios), flush=True)
    return rows


def _ratio(a: dict[str, object], b: dict[str, object], key: str) -> float:
    return round(int(str(a[key])) / max(1, int(str(b[key]))), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="1,16", help="comma list of concurrencies")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--at", metavar="REF", help="run the server from this commit's tree")
    parser.add_argument(
        "--peer", action="store_true", help="also the durable FastAPI + aiosqlite reference"
    )
    parser.add_argument(
        "--floor", action="store_true", help="also Quart on hypercorn storing nothing"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
