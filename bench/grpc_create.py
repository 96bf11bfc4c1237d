"""gRPC create throughput: ``Publisher.create`` loops against a fresh ``tidings serve``.

Creates a fresh database (a new PostgreSQL database by default, or a SQLite file),
starts ``tidings serve --role grpc --insecure`` on it, then runs ``--clients``
concurrent SDK publishers (one ``Publisher`` and channel each, spread over
``--procs`` load-generator processes), each calling ``create`` in a loop (one
notification, a 100-character message, users spread over 1 000 ids) for ``--seconds``;
reports creates/s, the server's CPU per create (from /proc) and the load generators'.
``--reference`` first runs the same load against ``bench/refs/grpc_create_raw.py`` (a
grpc.aio server that parses each request and answers without storing anything) and
reports Tidings' figures as ratios of it: the floor grpc.aio itself sets on this machine.

    .venv/bin/python bench/grpc_create.py [--clients 16] [--seconds 10] [--procs 2]
        [--database postgres|sqlite|memory] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
        [--profile server.svg] [--reference]

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tidings.client import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PG_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@asynccontextmanager
async def fresh_database(kind: str, pg_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped (or deleted) afterwards."""
    if kind == "memory":  # the engine without a database: what the store adds, by difference
        yield "memory://"
        return
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'tidings.db'}"
        return
    name = f"tidings_bench_{uuid.uuid4().hex[:12]}"
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(dsn, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _clients(target: str, clients: int, first: int, start: float, stop: float) -> int:
    publishers = [Publisher(target, timeout=30.0, retries=0) for _ in range(clients)]
    message = "m" * 100

    async def loop(n: int, pub: Publisher) -> int:
        made, i = 0, 0
        await asyncio.sleep(max(0.0, start - time.time()))  # every client begins together
        while time.time() < stop:
            await pub.create(
                f"u{(first + n + i * 97) % 1000}", "bench", f"c{n} #{i}", message=message
            )
            made, i = made + 1, i + 1
        return made

    try:
        # One create each first: channels connected before the clock starts.
        for n, pub in enumerate(publishers):
            await pub.create(f"warm{first + n}", "bench", "warm-up")
        return sum(await asyncio.gather(*(loop(n, p) for n, p in enumerate(publishers))))
    finally:
        for pub in publishers:
            await pub.close()


def _worker(
    target: str,
    clients: int,
    first: int,
    start: float,
    stop: float,
    out: multiprocessing.Queue[tuple[int, float]],
) -> None:
    made = asyncio.run(_clients(target, clients, first, start, stop))
    out.put((made, time.process_time()))


async def load(args: argparse.Namespace, target: str, pid: int) -> dict[str, float]:
    """Run the load generators against ``target`` (server process ``pid``) and measure."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[int, float]] = context.Queue()
    split = [
        args.clients // args.procs + (p < args.clients % args.procs) for p in range(args.procs)
    ]
    start = time.time() + 3.0  # workers spawn and warm up meanwhile
    stop = start + args.seconds
    workers = [
        context.Process(target=_worker, args=(target, n, sum(split[:p]) * 10, start, stop, results))
        for p, n in enumerate(split)
        if n
    ]
    for worker in workers:
        worker.start()
    spy = None
    if args.profile:
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--format",
            {".json": "speedscope", ".svg": "flamegraph"}.get(
                Path(args.profile).suffix, "raw"
            ),
            "-o", args.profile, "-p", str(pid), "--threads",
            *(["--idle"] if args.idle else []),
            "--duration", str(int(args.seconds)),
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    await asyncio.sleep(max(0.0, start - time.time()))
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(max(0.0, stop - time.time()))
    cpu = cpu_seconds(pid) - cpu0
    made, client_cpu = 0, 0.0
    for _ in workers:
        n, spent = await asyncio.to_thread(results.get, True, 60.0)
        made, client_cpu = made + n, client_cpu + spent
    for worker in workers:
        worker.join(10)
    if spy is not None:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), 30)
    return {
        "creates": made,
        "creates_per_s": round(made / args.seconds),
        "server_cpu_cores": round(cpu / args.seconds, 2),
        "server_us_cpu_per_create": round(cpu / max(made, 1) * 1e6, 1),
        "loadgen_us_cpu_per_create": round(client_cpu / max(made, 1) * 1e6, 1),
    }


async def reference(args: argparse.Namespace) -> dict[str, float]:
    """The same load against ``bench/refs/grpc_create_raw.py``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.refs.grpc_create_raw", "--port", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        if line[:1] != ["ready"]:
            raise RuntimeError(f"reference server did not start: {line}")
        quiet = argparse.Namespace(**{**vars(args), "profile": None})
        return await load(quiet, line[1], proc.pid)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def run(args: argparse.Namespace) -> dict[str, object]:
    raw = await reference(args) if args.reference else None
    async with fresh_database(args.database, args.pg_url) as url:
        server = await ServerProcess("--insecure", database_url=url, role="grpc").start()
        assert server.proc is not None
        try:
            figures = await load(args, server.grpc_addr, server.proc.pid)
        finally:
            await server.stop()
    result: dict[str, object] = {
        "database": args.database,
        "clients": args.clients,
        "procs": args.procs,
        "seconds": args.seconds,
        **figures,
    }
    if raw is not None:
        result["reference"] = raw
        result["ratio_creates_per_s"] = round(
            figures["creates_per_s"] / max(raw["creates_per_s"], 1.0), 2
        )
        result["ratio_server_cpu_per_create"] = round(
            figures["server_us_cpu_per_create"] / max(raw["server_us_cpu_per_create"], 1.0), 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--database", choices=["postgres", "sqlite", "memory"], default="postgres")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument(
        "--profile", metavar="FILE", help="py-spy record the server (.svg, .json or raw)"
    )
    parser.add_argument("--idle", action="store_true", help="profile idle threads too")
    parser.add_argument(
        "--reference", action="store_true", help="also measure bench/refs/grpc_create_raw.py"
    )
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
