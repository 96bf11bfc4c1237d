"""REST create throughput and server CPU per create, with 1 and 16 concurrent clients.

Starts ``tidings serve --insecure`` (engine and bridge in one process, fresh SQLite
file) — from this tree, or with ``--at REF`` from a snapshot of a commit (``git
archive``, read-only), for before/after comparisons — and, for each concurrency,
sends ``POST /api/v1/notifications`` (aiohttp, one connection per client) for
``--seconds`` after a short warm-up. Reports creates/s, latency p50/p99 and the server
process's CPU per create (user + system, all threads, from /proc).

    .venv/bin/python bench/rest_create.py [--clients 1,16] [--seconds 10] [--at REF]
        [--peer] [--floor] [--baseline REF] [--rounds N]

With ``--peer``, the same load also goes to ``bench/refs/fastapi_durable.py`` (FastAPI +
aiosqlite, one INSERT and commit per request, then a send to the user's sockets) and
the ratios Tidings / reference are printed. No client holds a socket here: both answer
once the row is committed. With ``--floor``, the same load also goes to
``bench/refs/quart_create_floor.py`` (Quart on hypercorn answering 201 and storing
nothing): the most creates/s the bridge's HTTP stack can serve with these clients on
this machine, whatever is behind it.

With ``--baseline REF``, Tidings from that commit's tree (``git archive``) is measured
too, each round right before or after this one (who goes first alternates), and
``--rounds N`` repeats every measure N times: the ratios are printed per round, with
the load average, and their medians at the end (a shared machine drifts; ratios of
neighbouring runs drift less). With ``--paired`` as well, this tree, the baseline (and
the peer) are served at once and every client sends its creates to each in turn, still
one in flight: all meet the same disk and the same neighbours, and the ratios of their
round trips hold steady where creates/s of runs seconds apart do not.

Loopback only; every run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
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


async def load_paired(
    urls: list[str], clients: int, seconds: float, shift: int = 0
) -> list[list[float]]:
    """As ``load``, each client sending its creates to the servers ``urls`` in turn (one
    in flight per client): the latencies at each server, under the same conditions.
    Client ``c`` goes the other way round on odd ``shift + c``, so that no server always
    follows the same one."""
    times: list[list[float]] = [[] for _ in urls]
    end = time.perf_counter() + seconds

    async def client(c: int) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(
                    aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=1))
                )
                for url in urls
            ]
            i = 0
            while time.perf_counter() < end:
                s = (i + c) % len(urls)  # each client starts at another server
                if (shift + c) % 2:
                    s = len(urls) - 1 - s
                body = {"user_id": f"u{c}-{i % 100}", "type": "bench", "title": f"{c}/{i}",
                        "message": "m" * 200}  # fmt: skip
                t0 = time.perf_counter()
                async with sessions[s].post("/api/v1/notifications", json=body) as response:
                    await response.read()
                    if response.status != 201:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                times[s].append(time.perf_counter() - t0)
                i += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    return times


async def measure_paired(
    servers: list[tuple[str, Server]], clients: int, seconds: float, shift: int = 0
) -> list[dict[str, object]]:
    """Every server measured at once (``load_paired``): latencies and CPU per create."""
    urls = [server.url for _, server in servers]
    await load_paired(urls, clients, 1.0, shift)  # warm-up
    cpu0 = [cpu_seconds(server.proc.pid) for _, server in servers]
    t0 = time.perf_counter()
    times = await load_paired(urls, clients, seconds, shift)
    elapsed = time.perf_counter() - t0
    rows = []
    for (label, server), mine, before in zip(servers, times, cpu0, strict=True):
        cpu = cpu_seconds(server.proc.pid) - before
        row = {
            "server": label,
            "clients": clients,
            "creates": len(mine),
            "creates_per_s": round(len(mine) / elapsed),
            "mean_ms": round(statistics.fmean(mine) * 1e3, 3),
            "p50_ms": round(pct(mine, 50) * 1e3, 3),
            "p99_ms": round(pct(mine, 99) * 1e3, 2),
            "server_us_cpu_per_create": round(cpu / len(mine) * 1e6),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


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


async def tidings(
    tree: Path, db: Path, label: str, clients: int, seconds: float
) -> dict[str, object]:
    """One measure of ``tidings serve`` from ``tree`` on a fresh SQLite file ``db``."""
    server = await start(
        [sys.executable, "-m", "tidingsd.cli", "serve", "--insecure",
         "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
         "--database-url", f"sqlite+aiosqlite:///{db}"],
        tree, LISTENING,
    )  # fmt: skip
    path = "in-process" if "in-process" in server.startup else "loopback gRPC"
    try:
        return await measure(server, f"{label}, {path}", clients, seconds)
    finally:
        await server.stop()


async def floor(clients: int, seconds: float) -> dict[str, object]:
    """One measure of ``bench/refs/quart_create_floor.py``."""
    server = await start(
        [sys.executable, "-m", "bench.refs.quart_create_floor", "--port", "0"], ROOT, READY
    )
    try:
        return await measure(server, "quart+hypercorn, storing nothing", clients, seconds)
    finally:
        await server.stop()


async def peer(db: Path, clients: int, seconds: float) -> dict[str, object]:
    """One measure of ``bench/refs/fastapi_durable.py`` on a fresh SQLite file ``db``."""
    server = await start(
        [sys.executable, "-m", "bench.refs.fastapi_durable", "--port", "0", "--db", str(db)],
        ROOT, READY,
    )  # fmt: skip
    try:
        return await measure(server, "fastapi+aiosqlite", clients, seconds)
    finally:
        await server.stop()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = ROOT
        if args.at:
            tree = Path(tmp) / "tree"
            tree.mkdir()
            snapshot(args.at, tree)
        base = None
        if args.baseline:
            base = Path(tmp) / "baseline"
            base.mkdir()
            snapshot(args.baseline, base)
        runs = 0

        def db(name: str) -> Path:
            nonlocal runs
            runs += 1
            return Path(tmp) / f"{name}-{runs}.db"

        for clients in [int(c) for c in args.clients.split(",")]:
            summary: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                measured: dict[str, dict[str, object]] = {}
                mine_first = base is None or round_ % 2 == 0  # alternate who goes first
                for who in ("mine", "base") if mine_first else ("base", "mine"):
                    if who == "mine":
                        measured[who] = await tidings(
                            tree, db("tidings"), f"tidings ({args.at or 'working tree'})",
                            clients, args.seconds,
                        )  # fmt: skip
                    elif base is not None:
                        measured[who] = await tidings(
                            base, db("baseline"), f"tidings ({args.baseline})",
                            clients, args.seconds,
                        )  # fmt: skip
                if args.floor:
                    measured["floor"] = await floor(clients, args.seconds)
                if args.peer:
                    measured["peer"] = await peer(db("peer"), clients, args.seconds)
                rows.extend(measured.values())
                mine = measured["mine"]
                ratios: dict[str, object] = {"clients": clients, "round": round_ + 1}
                for other, key in (("base", "baseline"), ("floor", "floor"), ("peer", "peer")):
                    if other in measured:
                        for field in ("creates_per_s", "server_us_cpu_per_create"):
                            name = f"tidings/{key} {field}"
                            ratios[name] = _ratio(mine, measured[other], field)
                            summary.setdefault(name, []).append(float(str(ratios[name])))
                ratios["load"] = load_average()
                print(json.dumps(ratios), flush=True)
            if args.rounds > 1:
                medians = {k: round(statistics.median(v), 2) for k, v in summary.items()}
                print(
                    json.dumps({"clients": clients, "rounds": args.rounds, "median": medians}),
                    flush=True,
                )
    return rows


async def run_paired(args: argparse.Namespace) -> list[dict[str, object]]:
    """``--paired``: this tree, the baseline and the peer served at once, each client's
    creates going to them in turn; per round the ratios of their mean and median
    round trips (baseline / this, peer / this: above 1, this tree is faster)."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        snapshot(args.baseline, base)
        for clients in [int(c) for c in args.clients.split(",")]:
            summary: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                async with contextlib.AsyncExitStack() as stack:
                    servers: list[tuple[str, Server]] = []
                    trees = [("mine", ROOT), ("baseline", base)]
                    for label, tree in trees if round_ % 2 == 0 else trees[::-1]:
                        server = await start(
                            [sys.executable, "-m", "tidingsd.cli", "serve", "--insecure",
                             "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                             "--database-url",
                             f"sqlite+aiosqlite:///{tmp}/{label}-{clients}-{round_}.db"],
                            tree, LISTENING,
                        )  # fmt: skip
                        stack.push_async_callback(server.stop)
                        servers.append((label, server))
                    if args.peer:
                        server = await start(
                            [sys.executable, "-m", "bench.refs.fastapi_durable", "--port", "0",
                             "--db", f"{tmp}/peer-{clients}-{round_}.db"],
                            ROOT, READY,
                        )  # fmt: skip
                        stack.push_async_callback(server.stop)
                        servers.append(("peer", server))
                    servers.sort(key=lambda server: ("mine", "baseline", "peer").index(server[0]))
                    measured = await measure_paired(servers, clients, args.seconds, round_)
                rows.extend(measured)
                mine = measured[0]
                ratios: dict[str, object] = {"clients": clients, "round": round_ + 1}
                for theirs in measured[1:]:
                    for field in ("mean_ms", "p50_ms", "server_us_cpu_per_create"):
                        name = f"{theirs['server']}/tidings {field}"
                        if field == "server_us_cpu_per_create":
                            name = f"tidings/{theirs['server']} {field}"
                            value = float(str(mine[field])) / float(str(theirs[field]))
                        else:
                            value = float(str(theirs[field])) / float(str(mine[field]))
                        ratios[name] = round(value, 3)
                        summary.setdefault(name, []).append(value)
                ratios["load"] = load_average()
                print(json.dumps(ratios), flush=True)
            medians = {k: round(statistics.median(v), 3) for k, v in summary.items()}
            print(
                json.dumps({"clients": clients, "rounds": args.rounds, "median": medians}),
                flush=True,
            )
    return rows


def _ratio(a: dict[str, object], b: dict[str, object], key: str) -> float:
    return round(int(str(a[key])) / max(1, int(str(b[key]))), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="1,16", help="comma list of concurrencies")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--at", metavar="REF", help="run the server from this commit's tree")
    parser.add_argument(
        "--baseline", metavar="REF", help="also Tidings from this commit's tree, alternated"
    )
    parser.add_argument("--rounds", type=int, default=1, help="measure every server N times")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="with --baseline: serve both (and --peer) at once, creates sent to each in turn",
    )
    parser.add_argument(
        "--peer", action="store_true", help="also the durable FastAPI + aiosqlite reference"
    )
    parser.add_argument(
        "--floor", action="store_true", help="also Quart on hypercorn storing nothing"
    )
    args = parser.parse_args()
    if args.paired and not args.baseline:
        parser.error("--paired needs --baseline")
    asyncio.run(run_paired(args) if args.paired else run(args))


if __name__ == "__main__":
    main()
