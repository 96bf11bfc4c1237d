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
        [--profile server.svg] [--profile-clients loadgen.txt] [--native] [--reference]
        [--baseline 251e01c --rounds 3]

``--baseline REF`` measures a snapshot of commit REF (its server AND its SDK in the load
generators) in alternating rounds with the working tree (``--rounds``, the order swapped
every round, a fresh database each run), and reports the medians of the same-round
ratios (working tree ÷ baseline) with the load average of each round.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PG_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` (``main``, or its name and id)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            name = "main" if task.name == str(pid) else f"{comm}-{task.name}"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


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
    from tidings.client import Publisher  # imported here: ``_worker`` picks the SDK's tree

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
    sdk: str,
    target: str,
    clients: int,
    first: int,
    start: float,
    stop: float,
    out: multiprocessing.Queue[tuple[int, float]],
) -> None:
    if sdk:  # the SDK of a baseline snapshot, ahead of the installed one
        sys.path.insert(0, sdk)
        import tidings.client

        if not tidings.client.__file__ or not tidings.client.__file__.startswith(sdk):
            raise RuntimeError(f"the SDK under test is not {sdk}: {tidings.client.__file__}")
    made = asyncio.run(_clients(target, clients, first, start, stop))
    out.put((made, time.process_time()))


def _spy(args: argparse.Namespace, pid: int, out: str) -> list[str]:
    """The py-spy command line that records ``pid`` for the run into ``out``."""
    return [
        str(Path(sys.executable).parent / "py-spy"), "record", "--format",
        {".json": "speedscope", ".svg": "flamegraph"}.get(Path(out).suffix, "raw"),
        "-o", out, "-p", str(pid), "--threads", "-r", "500",
        *(["--idle"] if args.idle else []), *(["--native"] if args.native else []),
        "--duration", str(int(args.seconds)),
    ]  # fmt: skip


async def load(args: argparse.Namespace, target: str, pid: int, sdk: str = "") -> dict[str, float]:
    """Run the load generators (the SDK under ``sdk``, or the installed one) against
    ``target`` (server process ``pid``) and measure."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[int, float]] = context.Queue()
    split = [
        args.clients // args.procs + (p < args.clients % args.procs) for p in range(args.procs)
    ]
    start = time.time() + 3.0  # workers spawn and warm up meanwhile
    stop = start + args.seconds
    workers = [
        context.Process(
            target=_worker, args=(sdk, target, n, sum(split[:p]) * 10, start, stop, results)
        )
        for p, n in enumerate(split)
        if n
    ]
    for worker in workers:
        worker.start()
    spies = []
    await asyncio.sleep(max(0.0, start - time.time()))
    for who, out in ((pid, args.profile), (workers[0].pid, args.profile_clients)):
        if out and who is not None:
            spies.append(
                await asyncio.create_subprocess_exec(
                    *_spy(args, who, out), stdout=asyncio.subprocess.DEVNULL
                )
            )
    cpu0, threads0 = cpu_seconds(pid), thread_cpu(pid)
    await asyncio.sleep(max(0.0, stop - time.time()))
    cpu, threads = cpu_seconds(pid) - cpu0, thread_cpu(pid)
    made, client_cpu = 0, 0.0
    for _ in workers:
        n, spent = await asyncio.to_thread(results.get, True, 60.0)
        made, client_cpu = made + n, client_cpu + spent
    for worker in workers:
        worker.join(10)
    for spy in spies:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), 30)
    return {
        "creates": made,
        "creates_per_s": round(made / args.seconds),
        "server_cpu_cores": round(cpu / args.seconds, 2),
        "server_us_cpu_per_create": round(cpu / max(made, 1) * 1e6, 1),
        "loadgen_us_cpu_per_create": round(client_cpu / max(made, 1) * 1e6, 1),
        "server_us_cpu_per_create_by_thread": {
            name: round((spent - threads0.get(name, 0.0)) / max(made, 1) * 1e6, 1)
            for name, spent in sorted(threads.items())
            if spent - threads0.get(name, 0.0) > 0
        },
    }


async def reference(args: argparse.Namespace) -> dict[str, float]:
    """The same load against ``bench/refs/grpc_create_raw.py``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.refs.grpc_create_raw", "--port", "0",
        "--loop", args.reference_loop, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        if line[:1] != ["ready"]:
            raise RuntimeError(f"reference server did not start: {line}")
        quiet = argparse.Namespace(**{**vars(args), "profile": None, "profile_clients": None})
        return await load(quiet, line[1], proc.pid)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def measure(args: argparse.Namespace, tree: Path | None = None) -> dict[str, float]:
    """One run against a fresh database: Tidings from ``tree`` (server and SDK), or from
    the working tree."""
    sdk = str(tree / "clients" / "python" / "src") if tree else ""
    async with fresh_database(args.database, args.pg_url) as url:
        server = await ServerProcess(
            "--insecure",
            database_url=url,
            role="grpc",
            cwd=str(tree) if tree else None,
            env={"PYTHONPATH": sdk} if tree else None,
        ).start()
        assert server.proc is not None
        try:
            return await load(args, server.grpc_addr, server.proc.pid, sdk)
        finally:
            await server.stop()


def snapshot(ref: str, into: Path) -> None:
    """The committed tree at ``ref`` in ``into``, with this tree's generated messages (the
    protocol is the same; ``make`` writes them, git does not hold them)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)
    generated = Path("clients/python/src/tidings/v1")
    if not (into / generated / "admin_pb2.py").exists():
        shutil.copytree(ROOT / generated, into / generated, dirs_exist_ok=True)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def ab(args: argparse.Namespace) -> dict[str, object]:
    """Alternating rounds, working tree and ``args.baseline``; medians of the ratios."""
    keys = ("creates_per_s", "server_us_cpu_per_create", "loadgen_us_cpu_per_create")
    rounds: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="tidings-base-") as tmp:
        base = Path(tmp)
        snapshot(args.baseline, base)
        for n in range(args.rounds):
            runs: dict[str, dict[str, float]] = {}
            order = ("tree", "base") if n % 2 == 0 else ("base", "tree")
            for which in order:
                runs[which] = await measure(args, base if which == "base" else None)
            row: dict[str, object] = {"round": n + 1, "load": load_average(), **runs}
            row["ratio"] = {k: round(runs["tree"][k] / max(runs["base"][k], 1e-9), 3) for k in keys}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rounds.append(row)
    ratios = [r["ratio"] for r in rounds]
    return {
        "database": args.database,
        "clients": args.clients,
        "baseline": args.baseline,
        "rounds": rounds,
        "median_ratio": {
            k: round(statistics.median(r[k] for r in ratios), 3)  # type: ignore[index]
            for k in keys
        },
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    if args.baseline:
        return await ab(args)
    raw = await reference(args) if args.reference else None
    figures = await measure(args)
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
    parser.add_argument(
        "--profile-clients", metavar="FILE", help="py-spy record the first load generator"
    )
    parser.add_argument(
        "--reference-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="the reference server's event loop (Tidings runs on uvloop)",
    )  # fmt: skip
    parser.add_argument("--native", action="store_true", help="profiles with native frames")
    parser.add_argument("--idle", action="store_true", help="profile idle threads too")
    parser.add_argument(
        "--baseline", metavar="REF", help="A/B against a snapshot of commit REF (server + SDK)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--baseline)")
    parser.add_argument(
        "--reference", action="store_true", help="also measure bench/refs/grpc_create_raw.py"
    )
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
