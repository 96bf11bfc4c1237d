"""The comparison benchmark: Tidings against minimal reference servers, in one run.

    make bench                                   # the default suite, ~10 minutes
    .venv/bin/python -m bench.run --quick        # tiny N, one pass, ~1 minute
    .venv/bin/python -m bench.run --servers tidings-ws,quart --n 1000 --scenarios broadcast
    .venv/bin/python -m bench.run --profile      # py-spy on Tidings at N=1000, both paths
    .venv/bin/python -m bench.run --servers tidings-grpc,grpc-raw --n 1000 \
        --scenarios connect,broadcast --rounds 5 --baseline main   # medians of same-round ratios

For every (server, variant, N) it starts a fresh server process (Tidings: a fresh
SQLite file, or a fresh PostgreSQL database for the REST scenario), runs
``bench.loadgen`` in a separate process against it, and collects one JSON object per
phase. Results go to ``bench/results/bench-<time>.jsonl``; the Markdown report (absolute
figures and ratios to each reference measured in the same run) is printed and, unless
``--no-docs``, appended to ``docs/BENCHMARKS.md`` with the date, commit and command.
Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
PG_ADMIN = os.environ.get("TIDINGS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")

#: name → (load generator kind, reference module or None for Tidings, speaks WebSocket)
SERVERS: dict[str, tuple[str, str | None, bool]] = {
    "tidings-ws": ("tidings_ws", None, True),
    "tidings-grpc": ("tidings_grpc", None, False),
    "ws-raw": ("ws", "bench.refs.ws_raw", True),
    "quart": ("ws", "bench.refs.quart_ws", True),
    "socketio": ("socketio", "bench.refs.socketio_srv", True),
    "grpc-raw": ("grpc_raw", "bench.refs.grpc_raw", False),
    "fastapi": ("ws", "bench.refs.fastapi_ws", True),
}
REFERENCES = ["ws-raw", "quart", "socketio", "grpc-raw", "fastapi"]
TIDINGS = ["tidings-ws", "tidings-grpc"]
SCENARIOS = ["connect", "fanout", "broadcast", "steady", "targeted", "backlog", "rest", "deflate"]
#: N at which the steady-traffic (pause) phase runs.
STEADY_N = 5000
DEFAULT_NS = [100, 1000, 5000, 10000]
#: The phases ``--profile`` records (py-spy on the Tidings process).
PROFILED = ["connect", "broadcast", "targeted"]


@dataclass
class Session:
    """One server process and one load-generator process."""

    server: str
    n: int
    phases: list[str]
    variant: str = "plain"
    store: str = "sqlite"
    params: dict[str, Any] = field(default_factory=dict)
    #: Tidings from this commit's tree (``--baseline``); empty: the tree being measured.
    baseline: str = ""

    @property
    def label(self) -> str:
        extra = f" {self.store}" if "rest" in self.phases else ""
        at = f"@{self.baseline}" if self.baseline else ""
        return f"{self.server}{at} {self.variant} N={self.n}{extra} [{','.join(self.phases)}]"


# --- the plan -------------------------------------------------------------------------


def sizing(n: int, quick: bool) -> dict[str, Any]:
    """Per-N loads: ~30 000 deliveries per throughput phase, a window of ~4 000 in flight."""
    if quick:
        return {"broadcasts": 10, "fanout": 3, "window": 4, "settle": 0.5, "rate": 100,
                "seconds": 1.0, "steady_seconds": 1.0, "steady_rate": 50, "steady_every": 0.5,
                "backlog_users": 2, "backlog": 10, "rest_requests": 100,
                "rest_concurrency": 8, "timeout": 60, "phase_timeout": 20, "procs": 2}  # fmt: skip
    return {
        "broadcasts": max(3, min(300, 30_000 // n)),
        "fanout": 20 if n <= 100 else 10 if n <= 1000 else 5 if n <= 5000 else 3,
        "window": max(2, min(32, math.ceil(4000 / n))),
        "settle": 2.0,
        "rate": 500,
        "seconds": 4.0,
        "steady_seconds": 8.0,
        "steady_rate": 200,
        "steady_every": 1.0,
        "backlog_users": 10,
        "backlog": 100,
        "rest_requests": 3000,
        "rest_concurrency": 32,
        "timeout": 300,
        "phase_timeout": 120,
        "procs": 2,
    }


def plan(args: argparse.Namespace) -> list[Session]:
    """The sessions to run, in order, from the command line."""
    servers = [s for s in args.servers.split(",") if s]
    scenarios = set(args.scenarios.split(","))
    ns = [int(x) for x in args.n.split(",")] if args.n else ([50] if args.quick else DEFAULT_NS)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    sessions: list[Session] = []
    for n in ns:
        if n > 5000 and not args.quick and limit < n + 1024:
            print(f"# skipping N={n}: RLIMIT_NOFILE is {limit} (raise it with ulimit -n)")
            continue
        for server in servers:
            if n > 5000 and server not in ("tidings-ws", "tidings-grpc", "ws-raw", "grpc-raw"):
                continue  # 10 000: the Tidings paths and the fastest reference of each kind
            if server == "fastapi" and n != 1000 and not args.quick and not args.n:
                continue  # the optional reference: at N = 1 000 only, unless asked
            phases = ["connect", "fanout", "broadcast"]
            if n > 5000:
                phases = ["connect", "broadcast"]
            is_main_n = n == 1000 or (args.quick and n == ns[0])
            if n == STEADY_N or (args.quick and n == ns[0]):
                phases.append("steady")
            if is_main_n:
                phases.append("targeted")
                if server in TIDINGS:
                    phases.append("backlog")
            phases = [p for p in phases if p in scenarios]
            if phases:
                sessions.append(Session(server, n, phases, params=sizing(n, args.quick)))
            if is_main_n and "deflate" in scenarios and SERVERS[server][2] and not args.quick:
                phases = [p for p in ("connect", "fanout", "broadcast") if p in scenarios]
                if phases:
                    sessions.append(
                        Session(server, n, phases, variant="deflate", params=sizing(n, args.quick))
                    )
    if "rest" in scenarios and "tidings-ws" in servers:
        params = sizing(1000, args.quick)
        sessions.append(Session("tidings-ws", 0, ["rest"], store="sqlite", params=params))
        if not args.quick or args.postgres:
            sessions.append(Session("tidings-ws", 0, ["rest"], store="postgres", params=params))
    return sessions


# --- servers --------------------------------------------------------------------------


READY = re.compile(r"^ready (\S+)")
LISTENING = re.compile(r"(grpc|http) listening on (\S+)")


class ServerProc:
    """A server subprocess that announces its addresses on stdout/stderr.

    References print ``ready HOST:PORT``; ``tidings serve`` logs ``grpc listening on …``
    and ``http listening on …`` (docs/PROTOCOL.md §8). ``cwd`` decides which source tree a
    ``python -m`` runs (a HEAD snapshot with ``--at-head``).
    """

    def __init__(self, argv: list[str], cwd: Path, wanted: set[str]) -> None:
        self.argv = argv
        self.cwd = cwd
        self.wanted = wanted
        self.proc: asyncio.subprocess.Process | None = None
        self.addrs: dict[str, str] = {}
        self.log: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> ServerProc:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while not self.wanted <= self.addrs.keys():
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        raise RuntimeError("server exited during start:\n" + "\n".join(self.log))
                    line = raw.decode(errors="replace").rstrip()
                    self.log.append(line)
                    if m := READY.search(line):
                        self.addrs["ready"] = m.group(1)
                    elif m := LISTENING.search(line):
                        self.addrs[m.group(1)] = m.group(2)
        except BaseException:
            await self.kill()
            raise
        self._pump = asyncio.create_task(self._drain())
        return self

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            if len(self.log) < 1000:
                self.log.append(raw.decode(errors="replace").rstrip())

    async def kill(self) -> None:
        """``kill -9``: nothing of a benchmark server is kept."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


async def fresh_pg_database() -> tuple[str, str]:
    """A new empty PostgreSQL database: (its name, its SQLAlchemy URL)."""
    import asyncpg

    name = f"tidings_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


async def drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def run_loadgen(spec: dict[str, Any], log_path: Path) -> list[dict[str, Any]]:
    """``python -m bench.loadgen --spec …`` in its own process; its JSON lines."""
    with log_path.open("ab") as errlog:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", "--spec", json.dumps(spec),
            stdout=asyncio.subprocess.PIPE, stderr=errlog, cwd=ROOT,
        )  # fmt: skip
        try:
            async with asyncio.timeout(spec["timeout"] + 60):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return [{**_base(spec), "phase": "timeout", "failed": "load generator killed"}]
    rows = []
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def _base(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in ("server", "variant", "n")}


async def run_session(
    session: Session, log_path: Path, profile: str | None, tree: Path = ROOT
) -> list[dict[str, Any]]:
    """Start the server (Tidings from ``tree``), drive it, then kill it."""
    kind, module, _ = SERVERS[session.server]
    spec: dict[str, Any] = {
        "server": session.server,
        "variant": session.variant,
        "n": session.n,
        "kind": kind,
        "deflate": session.variant == "deflate",
        "phases": session.phases,
        "store": session.store,
        "profile": profile,
        **session.params,
    }
    if module is not None:
        ref = await ServerProc(
            [sys.executable, "-m", module, "--port", "0"], ROOT, {"ready"}
        ).start()
        assert ref.proc is not None
        try:
            spec["pid"] = ref.proc.pid
            spec["ws_url"] = f"ws://{ref.addrs['ready']}"
            spec["grpc_addr"] = ref.addrs["ready"]
            return await run_loadgen(spec, log_path)
        finally:
            await ref.kill()

    pg_name = None
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        if session.store == "postgres":
            pg_name, url = await fresh_pg_database()
        argv = [sys.executable, "-m", "tidingsd.cli", "serve", "--insecure", "--database-url", url,
                "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]  # fmt: skip
        try:
            server = await ServerProc(argv, tree, {"grpc", "http"}).start()
            assert server.proc is not None
            try:
                spec["pid"] = server.proc.pid
                spec["ws_url"] = f"ws://{server.addrs['http']}"
                spec["http_url"] = f"http://{server.addrs['http']}"
                spec["grpc_addr"] = server.addrs["grpc"]
                return await run_loadgen(spec, log_path)
            finally:
                await server.kill()
                # The server's own warnings (long garbage collections, errors) go with
                # the run's log, labelled with the session.
                notes = [line for line in server.log if " WARNING " in line or " ERROR " in line]
                if notes:
                    with log_path.open("a") as log:
                        log.write(f"# server log, {session.label}:\n" + "\n".join(notes) + "\n")
        finally:
            if pg_name is not None:
                await drop_pg_database(pg_name)


async def pg_reachable() -> bool:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        await conn.close()
        return True
    except Exception:
        return False


# --- the report -----------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


#: Other people's CPU (cores) during a phase above which its figures are flagged.
NOISY = 0.3


def _noise(row: dict[str, Any]) -> str:
    """`` (others 0.8 ⚠)`` when the rest of the machine was busy during the phase."""
    foreign = row.get("foreign_cpu")
    if not isinstance(foreign, int | float):
        return ""
    return f" ({foreign:.2f}{' ⚠' if foreign > NOISY else ''})"


def _ratio(value: Any, ref: Any) -> str:
    if not isinstance(value, int | float) or not isinstance(ref, int | float) or not ref:
        return "–"
    return f"{value / ref:.2f}"


class Report:
    """Markdown tables from the rows of one run."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.index: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        for row in rows:
            if "phase" in row and "server" in row:
                key = (row["server"], row.get("variant", "plain"), row.get("n", 0), row["phase"])
                self.index[key] = row

    def get(self, server: str, variant: str, n: int, phase: str, key: str) -> Any:
        return self.index.get((server, variant, n, phase), {}).get(key)

    def servers(self, variant: str, n: int, phase: str) -> list[str]:
        present = {s for (s, v, nn, p) in self.index if v == variant and nn == n and p == phase}
        return [s for s in SERVERS if s in present]

    def refs(self, variant: str, n: int, phase: str, key: str) -> list[str]:
        return [
            r for r in REFERENCES
            if isinstance(self.get(r, variant, n, phase, key), int | float)
        ]  # fmt: skip

    def ns(self, phase: str, variant: str = "plain") -> list[int]:
        return sorted({nn for (_, v, nn, p) in self.index if p == phase and v == variant and nn})

    def broadcast_table(self, variant: str, n: int) -> list[str]:
        servers = self.servers(variant, n, "broadcast")
        if not servers:
            return []
        refs = self.refs(variant, n, "broadcast", "deliveries_per_s")
        head = ["server", "deliveries/s", *(f"÷ {r} rate / CPU" for r in refs), "µs CPU/delivery",
                "fan-out p50 / p99 ms", "under load p50 / p99 ms", "max gap ms",
                "server / loadgen CPU (others)", "frames"]  # fmt: skip
        wire = "permessage-deflate offered" if variant == "deflate" else "no compression"
        lines = [
            f"**Broadcast, N = {n:,}, {wire}** "
            "(a 256-byte payload to every client. Ratios, higher is better for both: *rate* = "
            "deliveries/s ÷ the reference's; *CPU* = the reference's server µs CPU per delivery "
            "÷ this server's, which does not depend on the load generator keeping up)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        key, us = "deliveries_per_s", "server_us_per_delivery"
        for s in servers:
            b = self.index[(s, variant, n, "broadcast")]
            f = self.index.get((s, variant, n, "fanout"), {})
            c = self.index.get((s, variant, n, "connect"), {})
            dps = b.get("deliveries_per_s")
            complete = "" if b.get("complete", True) else " (incomplete)"
            failed = b.get("failed")
            cells = [
                f"**{s}**" if s in TIDINGS else s,
                (_fmt(dps) + complete) if not failed else f"failed: {failed}",
                *(f"{_ratio(dps, self.get(r, variant, n, 'broadcast', key))} / "
                  f"{_ratio(self.get(r, variant, n, 'broadcast', us), b.get(us))}" for r in refs),
                _fmt(b.get("server_us_per_delivery"), 1),
                f"{_fmt(f.get('latency_p50_ms'), 1)} / {_fmt(f.get('latency_p99_ms'), 1)}",
                f"{_fmt(b.get('latency_p50_ms'), 1)} / {_fmt(b.get('latency_p99_ms'), 1)}",
                _fmt(b.get("max_gap_ms"), 1),
                f"{_fmt(b.get('server_cpu'), 2)} / {_fmt(b.get('loadgen_cpu'), 2)}"
                + _noise(b),
                f"{b.get('deliveries', 0):,}/{b.get('expected', 0):,}"
                + (f" ({c.get('extensions')})" if variant == "deflate" else ""),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]

    def connect_table(self) -> list[str]:
        lines = [
            "**Connections and idle memory** (connect: N clients, 100 at a time, until each "
            "got its greeting; idle: server RSS growth ÷ N after 2 s; ratios: value ÷ the "
            "reference's — higher is better for connects/s, lower for KiB)",
            "",
        ]
        head = ["server", "variant", "N", "connects/s", "p99 ms", "KiB/session", "extensions"]
        refs_all = [r for r in REFERENCES if any(k[0] == r for k in self.index)]
        head += [f"KiB ÷ {r}" for r in refs_all] + [f"conn/s ÷ {r}" for r in refs_all]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for variant in ("plain", "deflate"):
            for n in self.ns("connect", variant):
                for s in self.servers(variant, n, "connect"):
                    c = self.index[(s, variant, n, "connect")]
                    kib, cps = c.get("idle_kib_per_session"), c.get("connect_per_s")
                    cells = [
                        f"**{s}**" if s in TIDINGS else s, variant, f"{n:,}",
                        _fmt(cps), _fmt(c.get("connect_p99_ms"), 1), _fmt(kib, 1),
                        str(c.get("extensions") or "–") + (
                            f" ({c['error_count']} failed)" if c.get("error_count") else ""),
                        *(_ratio(kib, self.get(r, variant, n, "connect", "idle_kib_per_session"))
                          for r in refs_all),
                        *(_ratio(cps, self.get(r, variant, n, "connect", "connect_per_s"))
                          for r in refs_all),
                    ]  # fmt: skip
                    lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]

    def targeted_table(self) -> list[str]:
        rows = [(k, v) for k, v in self.index.items() if k[3] == "targeted"]
        if not rows:
            return []
        n = rows[0][0][2]
        refs = self.refs("plain", n, "targeted", "latency_p99_ms")
        head = ["server", "N", "rate/s (achieved)", "delivered", "p50 ms", "p99 ms", "max ms",
                "µs CPU/message (others)", *(f"p99 ÷ {r}" for r in refs)]  # fmt: skip
        lines = [
            "**Targeted: one message to one client at a fixed rate** (Tidings: gRPC "
            "`CreateNotification`, committed to SQLite before delivery; references: "
            "in-memory send)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        p99 = "latency_p99_ms"
        for s in self.servers("plain", n, "targeted"):
            t = self.index[(s, "plain", n, "targeted")]
            cells = [
                f"**{s}**" if s in TIDINGS else s, f"{n:,}",
                f"{t.get('rate')} ({_fmt(t.get('achieved_rate'))})",
                f"{t.get('delivered', 0):,}/{t.get('sent', 0):,}",
                _fmt(t.get("latency_p50_ms"), 2), _fmt(t.get("latency_p99_ms"), 2),
                _fmt(t.get("latency_max_ms"), 1),
                _fmt(t.get("server_us_per_message"), 0) + _noise(t),
                *(_ratio(t.get("latency_p99_ms"), self.get(r, "plain", n, "targeted", p99))
                  for r in refs),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]

    def steady_table(self) -> list[str]:
        rows = [(k, v) for k, v in self.index.items() if k[3] == "steady"]
        if not rows:
            return []
        lines = [
            "**Steady traffic (pauses)**: targeted messages at a fixed rate plus one "
            "broadcast to everyone every second, well below capacity; a server pause shows "
            "as a long gap between consecutive deliveries and as a slow targeted message",
            "",
            "| server | N | targeted/s, broadcast every | longest gap ms | targeted p50 / p99 "
            "/ max ms | broadcast deliveries p50 / p99 / max ms | delivered "
            "| server CPU (others) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (s, v, n, _), r in sorted(
            rows, key=lambda kv: (kv[0][2], list(SERVERS).index(kv[0][0]))
        ):
            if v != "plain":
                continue
            tq = " / ".join(_fmt(r.get(f"targeted_{q}_ms"), 1) for q in ("p50", "p99", "max"))
            bq = " / ".join(_fmt(r.get(f"broadcast_{q}_ms"), 1) for q in ("p50", "p99", "max"))
            name = f"**{s}**" if s in TIDINGS else s
            lines.append(
                f"| {name} | {n:,} | {r.get('rate')}, {r.get('broadcast_every_s')} s | "
                f"{_fmt(r.get('max_gap_ms'), 1)} | {tq} | {bq} | "
                f"{r.get('delivered', 0):,}/{r.get('expected', 0):,} | "
                f"{_fmt(r.get('server_cpu'), 2)}{_noise(r)} |"
            )
        return [*lines, ""]

    def tidings_table(self) -> list[str]:
        lines = ["**Tidings only: reconnect backlog and REST creates**", ""]
        lines += ["| scenario | figures |", "|---|---|"]
        for (s, _, _, p), row in self.index.items():
            if p != "backlog":
                continue
            drain = " / ".join(_fmt(row.get(f"drain_{q}_ms"), 2) for q in ("p50", "p99", "max"))
            lines.append(
                f"| {s}: reconnect with {row.get('backlog')} queued ({row.get('users')} users) "
                f"| greeting → last notification p50 / p99 / max {drain} ms; connect → "
                f"greeting p50 {_fmt(row.get('connect_p50_ms'), 2)} ms; `queued` reported "
                f"{row.get('queued_reported')}; failures {row.get('failures')} |"
            )
        for row in self.rows:
            if row.get("phase") != "rest":
                continue
            store = row.get("store")
            if row.get("failed"):
                lines.append(f"| REST create ({store}) | failed: {row['failed']} |")
                continue
            latency = f"{_fmt(row.get('latency_p50_ms'), 1)} / {_fmt(row.get('latency_p99_ms'), 1)}"
            cpu = f"{_fmt(row.get('server_cpu'), 2)} / {_fmt(row.get('loadgen_cpu'), 2)}" + _noise(
                row
            )
            lines.append(
                f"| REST `POST /api/v1/notifications`, {store}, {row.get('concurrency')} "
                f"concurrent | {_fmt(row.get('creates_per_s'))} creates/s, p50 / p99 {latency} "
                f"ms, {_fmt(row.get('server_us_per_create'))} µs server CPU per create, "
                f"server / loadgen (others) CPU {cpu}, {row.get('error_count', 0)} errors |"
            )
        return [*lines, ""] if len(lines) > 4 else []

    def _dps_ratio(self, a: str, b: str, n: int = 1000) -> float | None:
        x = self.get(a, "plain", n, "broadcast", "deliveries_per_s")
        y = self.get(b, "plain", n, "broadcast", "deliveries_per_s")
        ok = isinstance(x, int | float) and isinstance(y, int | float) and y
        return x / y if ok else None

    def targets_table(self) -> list[str]:
        """The issue's targets, judged on this run's figures."""
        items: list[tuple[str, Any, str, bool | None]] = []  # (target, value, shown, met)

        def add(target: str, value: Any, shown: str, met: bool | None) -> None:
            items.append((target, value, shown, met if value is not None else None))

        for ours, ref, floor, label, sizes in (
            ("tidings-ws", "socketio", 2.0, "WS broadcast ≥ 2× python-socketio", (1000, 5000)),
            ("tidings-ws", "quart", 1.0, "WS broadcast ≥ 1.0× Quart/hypercorn", (1000, 5000)),
            ("tidings-ws", "ws-raw", 0.5, "WS broadcast ≥ 0.5× raw websockets", (1000, 5000)),
            ("tidings-grpc", "grpc-raw", 0.8, "gRPC broadcast ≥ 0.8× raw grpc.aio", (1000,)),
        ):
            for n in sizes:
                r = self._dps_ratio(ours, ref, n)
                us = "server_us_per_delivery"
                mine = self.get(ours, "plain", n, "broadcast", us)
                theirs = self.get(ref, "plain", n, "broadcast", us)
                cpu = _ratio(theirs, mine)
                noisy = [
                    s for s in (ours, ref)
                    if (self.get(s, "plain", n, "broadcast", "foreign_cpu") or 0) > NOISY
                ]  # fmt: skip
                shown = f"{r or 0:.2f}× deliveries/s (CPU per delivery: {cpu}×)" + (
                    f" ⚠ others busy during {', '.join(noisy)}" if noisy else ""
                )
                add(f"{label} (N={n})", r, shown, (r or 0) >= floor)
        ours_last = self.get("tidings-ws", "plain", 5000, "fanout", "last_delivery_p50_ms")
        fastapi_last = self.get("fastapi", "plain", 5000, "fanout", "last_delivery_p50_ms")
        both = isinstance(ours_last, int | float) and isinstance(fastapi_last, int | float)
        times = ours_last / fastapi_last if both and fastapi_last else None
        add(
            "one broadcast to all of 5 000: last delivery p50 ≤ 2× FastAPI's",
            times,
            f"{ours_last} ms vs {fastapi_last} ms ({times or 0:.2f}×)",
            (times or 0) <= 2.0,
        )
        for s in TIDINGS:
            p99 = next(
                (row.get("latency_p99_ms") for k, row in self.index.items()
                 if k[0] == s and k[3] == "targeted"),
                None,
            )  # fmt: skip
            add(f"{s}: targeted p99 ≤ 5 ms at 500/s, 1000 users", p99, f"{p99} ms", (p99 or 0) <= 5)
        for s, variant, limit in (
            ("tidings-ws", "plain", 40),
            ("tidings-ws", "deflate", 64),
            ("tidings-grpc", "plain", 25),
        ):
            kib = self.get(s, variant, 1000, "connect", "idle_kib_per_session")
            ext = self.get(s, variant, 1000, "connect", "extensions")
            shown = f"{kib} KiB" + (f" (negotiated: {ext})" if variant == "deflate" else "")
            add(
                f"{s} {variant}: idle ≤ {limit} KiB/session (N=1000)",
                kib,
                shown,
                (kib or 0) <= limit,
            )
        for s in TIDINGS:
            conn = self.get(s, "plain", 10000, "connect", "connected")
            add(f"{s}: 10 000 concurrent sessions", conn, f"{conn} connected", (conn or 0) >= 10000)
            gap = self.get(s, "plain", STEADY_N, "steady", "max_gap_ms")
            add(
                f"{s}: no pause > 100 ms in steady traffic, N={STEADY_N} (longest gap "
                "between deliveries at 200 targeted/s + 1 broadcast/s)",
                gap,
                f"{gap} ms",
                (gap or 0) <= 100,
            )
        for (s, _, _, p), row in self.index.items():
            if p == "backlog":
                d = row.get("drain_p99_ms")
                add(
                    f"{s}: 100 queued delivered ≤ 20 ms after greeting (p99)",
                    d,
                    f"{d} ms",
                    (d or 0) <= 20,
                )
        lines = [
            "**Targets of the issue, judged on this run**",
            "",
            "| target | measured | verdict |",
            "|---|---|---|",
        ]
        for target, value, shown, met in items:
            verdict = "not measured" if met is None else "met" if met else "**not met**"
            lines.append(f"| {target} | {shown if value is not None else '–'} | {verdict} |")
        return [*lines, ""]

    def markdown(self) -> str:
        parts: list[str] = []
        parts += self.targets_table()
        for n in self.ns("broadcast"):
            parts += self.broadcast_table("plain", n)
        for n in self.ns("broadcast", "deflate"):
            parts += self.broadcast_table("deflate", n)
        parts += self.connect_table()
        parts += self.targeted_table()
        parts += self.steady_table()
        parts += self.tidings_table()
        return "\n".join(parts)


def rounds_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per round, each server's broadcast µs CPU per delivery and the CPU ratios measured in
    that round (a reference's µs ÷ Tidings'; with ``--baseline`` also Tidings ÷ its
    baseline); then the median of each column over the rounds.

    A ratio of one round compares two servers that ran back to back under the same load;
    the median of several such ratios moves far less than either server's own figure,
    which follows the shared machine's load from one run to the next."""
    us = "server_us_per_delivery"
    by: dict[tuple[str, int], dict[tuple[int, str], dict[str, Any]]] = {}
    for row in rows:
        if row.get("phase") == "broadcast" and isinstance(row.get(us), int | float):
            name = row["server"] + (f"@{row['baseline']}" if row.get("baseline") else "")
            by.setdefault((row.get("variant", "plain"), row["n"]), {})[
                (row.get("round", 1), name)
            ] = row
    lines: list[str] = []
    for (variant, n), found in sorted(by.items()):
        order = list(SERVERS)
        names = sorted({k[1] for k in found}, key=lambda s: (order.index(s.split("@")[0]), s))
        ratios = [
            (t, r) for t in names if t.split("@")[0] in TIDINGS for r in names if r in REFERENCES
        ]
        ratios += [(t, t.split("@")[0]) for t in names if "@" in t and t.split("@")[0] in names]
        head = ["round", "load", *(f"{s} µs" for s in names)]
        head += [f"{b} ÷ {a}" if b == a.split("@")[0] else f"{a} vs {b}" for a, b in ratios]
        lines += [
            f"**Broadcast rounds, N = {n:,}, {variant}** (server µs CPU per delivery; "
            "*X vs ref* = ref's µs ÷ X's, the CPU ratio, higher is better; *X ÷ X@base* = "
            "X's µs ÷ its baseline's, lower is better; load: the 1-minute load average at "
            "the start of each session)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        columns: list[list[float]] = [[] for _ in head[2:]]
        for round_no in sorted({k[0] for k in found}):
            got = [found.get((round_no, s)) for s in names]
            loads = sorted(g["load_at_start"] for g in got if g and "load_at_start" in g)
            cells = [str(round_no), f"{loads[0]:.1f}–{loads[-1]:.1f}" if loads else "–"]
            values: list[float | None] = [g[us] if g else None for g in got]
            for a, b in ratios:
                x, y = values[names.index(a)], values[names.index(b)]
                if x and y:
                    values.append(y / x)
                else:
                    values.append(None)
            for column, value in zip(columns, values, strict=True):
                if value is not None:
                    column.append(value)
            cells += [_fmt(v, 1) if i < len(names) else _fmt(v, 2) for i, v in enumerate(values)]
            lines.append("| " + " | ".join(cells) + " |")
        medians = [_median(c) for c in columns]
        cells = ["**median**", ""] + [
            f"**{_fmt(v, 1 if i < len(names) else 2)}**" for i, v in enumerate(medians)
        ]
        lines += ["| " + " | ".join(cells) + " |", ""]
    return lines


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


SECTION = "## Comparison suite"
SECTION_INTRO = """\
`make bench` (`bench/run.py`; see `bench/README.md`) starts, in one run, Tidings and
minimal reference servers — a hand-rolled `websockets` server (`ws-raw`), a plain Quart
route on hypercorn with uvloop (`quart`), python-socketio on uvicorn (`socketio`), raw
grpc.aio server-streaming with bytes (`grpc-raw`) and FastAPI on uvicorn (`fastapi`) —
and drives each from a separate load-generator process. `tidings-ws` is the browser path
(WebSocket → bridge → engine, one `tidings serve --insecure` process on SQLite),
`tidings-grpc` the native path (`NotificationStream.Connect`). A Tidings broadcast
commits one row per recipient before delivering; the references keep nothing: that is
the product as it is. Compare ratios measured in the same run: the machine is shared and
noisy, absolute figures drift between runs.
"""


def append_docs(markdown: str, meta: dict[str, Any]) -> None:
    """Append this run to ``docs/BENCHMARKS.md`` (the section intro once)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{SECTION_INTRO}"
    text = text.rstrip("\n") + (
        f"\n\n### Run of {meta['date']} · commit `{meta['commit']}`\n\n"
        f"{meta['machine']}. Command: `{meta['command']}` ({meta['duration_s']:.0f} s). "
        f"{meta['tree']}.\n\n"
        f"{markdown}\n"
    )
    DOCS.write_text(text)


# --- profiles -------------------------------------------------------------------------

#: (category, pattern on a frame's file) — the innermost frame that matches one decides.
CATEGORIES: list[tuple[str, str]] = [
    ("store (server/store, SQLAlchemy, aiosqlite, sqlite3, asyncpg)",
     r"server/store/|sqlalchemy|aiosqlite|sqlite3|asyncpg"),
    ("bridge JSON (bridge/jsonwire, bridge/relayframes)", r"bridge/jsonwire|bridge/relayframes"),
    ("bridge WS/REST handlers (bridge/, other)", r"\(bridge/"),
    ("hypercorn / wsproto / h11 / Quart", r"hypercorn/|wsproto/|h11/|quart/|quart_schema/"),
    ("relay stream (server/rpc/relay)", r"server/rpc/relay"),
    ("gRPC edge (server/rpc, convert)", r"server/rpc/"),
    ("grpc.aio runtime (grpc/)", r"grpc/|grpc_health|grpc_reflection"),
    ("protobuf", r"google/protobuf|_pb2"),
    ("engine (server/engine)", r"server/engine/"),
    ("metrics (prometheus_client)", r"prometheus_client|server/metrics"),
    ("logging", r"logging/"),
    ("asyncio machinery (tasks, queues, futures)", r"asyncio/|uvloop"),
]  # fmt: skip
#: Frames that are on every stack (entry points) and say nothing about the work.
ROOT_FRAMES = re.compile(r"asyncio/runners\.py|<frozen runpy>|tidingsd/cli\.py|threading\.py")


def summarise_profile(path: Path) -> dict[str, Any]:
    """Shares of py-spy samples (``--format raw --threads``): per thread, per category (by
    the innermost frame that matches one), the top self functions, the top project frames
    (inclusive), and the leaves that matched no category."""
    threads: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    others: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        head = frames[0] if frames[0].startswith(("thread", "process")) else ""
        thread = re.sub(r"\(\d+\)|Thread-\d+ ", "", head).strip() or "?"
        threads[thread] += count
        body = [f for f in frames[1 if head else 0 :] if not ROOT_FRAMES.search(f)]
        leaf = re.sub(r":\d+\)", ")", body[-1]) if body else "(uvloop native: I/O, C callbacks)"
        selfs[leaf[:120]] += count
        category = "other"
        for frame in reversed(body):
            hit = next((c for c, pattern in CATEGORIES if re.search(pattern, frame)), None)
            if hit:
                category = hit
                break
        if category == "other":
            others[leaf[:120]] += count
        cats[category] += count
        seen = set()
        for frame in body:
            name = re.sub(r":\d+\)", ")", frame)
            if re.search(r"\((server|bridge)/", name) and name not in seen:
                seen.add(name)
                inclusive[name[:120]] += count

    def share(counter: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / max(1, total), 1)) for name, c in counter.most_common(k)]

    return {
        "samples": total,
        "threads": share(threads, 8),
        "categories": share(cats, 16),
        "top_self": share(selfs, 30),
        "top_inclusive_project": share(inclusive, 30),
        "other_leaves": share(others, 10),
    }


# --- main -----------------------------------------------------------------------------


def git_commit(ref: str = "HEAD") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", ref],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def snapshot_head(into: Path, ref: str = "HEAD") -> None:
    """The committed tree at ``ref``, extracted into ``into`` (read-only git: ``git archive``)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)


def raise_nofile() -> int:
    """Raise the soft descriptor limit to the hard one; the limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny N and loads (~1 min)")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma list of {', '.join(SERVERS)} (default: all)",
    )
    parser.add_argument(
        "--n", default="", help="comma list of client counts (default 100,1000,5000,10000)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="REST on PostgreSQL even in --quick"
    )
    parser.add_argument(
        "--at-head",
        action="store_true",
        help="run Tidings from a snapshot of HEAD, not the working tree (for a baseline while "
        "others edit the tree)",
    )
    parser.add_argument(
        "--native", action="store_true", help="with --profile: C/Cython frames too (slower)"
    )
    parser.add_argument(
        "--summarise", nargs="+", metavar="RAW", help="summarise py-spy raw profiles and exit"
    )
    parser.add_argument(
        "--out", default=str(RESULTS), help="where results go (default bench/results)"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="do not append to docs/BENCHMARKS.md"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the planned sessions this many times, in reverse order every other round; "
        "the report adds each round's broadcast CPU ratios and their medians",
    )
    parser.add_argument(
        "--broadcasts",
        type=int,
        default=0,
        help="broadcasts per broadcast phase (default: ~30 000 deliveries' worth); more make "
        "a longer phase whose CPU per delivery moves less",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default="",
        help="also run Tidings from this commit's tree (git archive), next to each Tidings "
        "session, for an A/B in the same rounds",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on Tidings (both paths, or those --servers names; N=1000) during connect, "
        "broadcast, targeted; no docs",
    )
    return parser.parse_args(list(argv) if argv is not None else None)


async def main(argv: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Run the suite; the rows collected (also written to the results file)."""
    args = parse_args(argv)
    if args.summarise:
        for raw in args.summarise:
            print(f"# {raw}")
            print(json.dumps(summarise_profile(Path(raw)), indent=1))
        return []
    started = time.perf_counter()
    limit = raise_nofile()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before anything runs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = out / f"bench-{stamp}.jsonl"
    log_path = out / f"bench-{stamp}.log"
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(),
        "command": (
            "make bench"
            + (f" BENCH_ARGS={shlex.quote(shlex.join(sys.argv[1:]))}" if sys.argv[1:] else "")
            if os.environ.get("TIDINGS_BENCH_VIA_MAKE")
            else shlex.join(["python", "-m", "bench.run", *sys.argv[1:]])
        ),
        "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"RLIMIT_NOFILE {limit}",
    }
    if args.profile:
        phases = PROFILED[1:] if args.native else PROFILED  # native sampling slows connects
        params = {**sizing(1000, False), "broadcasts": 120, "profile_phases": phases,
                  "profile_native": args.native}  # fmt: skip
        # ``--servers`` narrows it to the Tidings paths named (e.g. only ``tidings-ws``).
        named = [s for s in args.servers.split(",") if s in TIDINGS]
        profiled = [s for s in TIDINGS if s in named] or TIDINGS
        sessions = [
            Session(s, 1000, ["connect", "broadcast", "targeted"], params=params) for s in profiled
        ]
    else:
        sessions = plan(args)
        if any(s.store == "postgres" for s in sessions) and not await pg_reachable():
            print(f"# PostgreSQL not reachable at {PG_ADMIN}: skipping the REST/PostgreSQL run")
            sessions = [s for s in sessions if s.store != "postgres"]
    if args.broadcasts > 0:
        for s in sessions:
            s.params = {**s.params, "broadcasts": args.broadcasts}
    rows: list[dict[str, Any]] = []
    stack = contextlib.ExitStack()
    trees = {"": ROOT}
    if args.baseline and not args.profile:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidings-base-")))
        snapshot_head(base, args.baseline)
        trees[args.baseline] = base
        sessions = [
            twin
            for s in sessions
            for twin in ([s, replace(s, baseline=args.baseline)] if s.server in TIDINGS else [s])
        ]
        meta["baseline"] = f"{args.baseline} ({git_commit(args.baseline)})"
    rounds = max(1, args.rounds)
    tree = ROOT
    if args.at_head:
        tree = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidings-head-")))
        snapshot_head(tree)
        meta["tree"] = f"Tidings from a snapshot of commit {meta['commit']} (--at-head)"
    else:
        meta["tree"] = f"Tidings from the working tree (HEAD {meta['commit']} at the start)"
    trees[""] = tree
    if "baseline" in meta:
        meta["tree"] += f"; baseline: Tidings from a snapshot of {meta['baseline']}"
    # Every other round in reverse order: no server always runs first, or last.
    schedule = [
        (r, s) for r in range(1, rounds + 1) for s in (sessions if r % 2 else sessions[::-1])
    ]
    commits: set[str] = set()
    with stack, results.open("w") as sink:
        sink.write(json.dumps({"meta": meta}) + "\n")
        for i, (round_no, session) in enumerate(schedule, 1):
            of_round = f" (round {round_no}/{rounds})" if rounds > 1 else ""
            print(f"[{i}/{len(schedule)}] {session.label}{of_round}", flush=True)
            commit = meta["commit"] if args.at_head else git_commit()
            if session.baseline:
                commit = git_commit(session.baseline)
            else:
                commits.add(commit)
            profile = None
            if args.profile:
                profile = str(out / f"profile-{session.server}-{stamp}")
            began = time.perf_counter()
            load = os.getloadavg()[0]
            try:
                got = await run_session(session, log_path, profile, trees[session.baseline])
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"[:300]
                got = [{"server": session.server, "variant": session.variant, "n": session.n,
                        "phase": session.phases[0], "failed": failure}]  # fmt: skip
            for row in got:
                row.setdefault("store", session.store)
                row["commit"] = commit
                row["round"] = round_no
                row["baseline"] = session.baseline
                row["load_at_start"] = round(load, 2)
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                print("   ", _brief(row), flush=True)
            rows += got
            print(f"    ({time.perf_counter() - began:.0f} s)", flush=True)
            for phase in session.params.get("profile_phases", []) if profile else []:
                raw = Path(f"{profile}-{phase}{'-native' if args.native else ''}.txt")
                if raw.exists():
                    summary = summarise_profile(raw)
                    raw.with_suffix(".summary.json").write_text(json.dumps(summary, indent=1))
                    print(f"# profile of {session.server} during {phase}: {raw}")
                    print(json.dumps({k: summary[k] for k in ("threads", "categories")}, indent=1))
    meta["duration_s"] = time.perf_counter() - started
    if len(commits) > 1:
        meta["tree"] += (
            f"; **HEAD moved during the run ({', '.join(sorted(commits))}): rows carry their "
            "commit; prefer `--at-head` for a baseline**"
        )
        print(f"# warning: HEAD moved during the run: {sorted(commits)}")
    # The usual tables from the measured tree's last round; then every round's ratios.
    last = [r for r in rows if r.get("round", 1) == rounds and not r.get("baseline")]
    markdown = Report(last).markdown()
    if rounds > 1 or args.baseline:
        markdown += "\n" + "\n".join(rounds_table(rows))
    print()
    print(markdown)
    print(f"# results: {results}")
    if not args.no_docs and not args.profile:
        append_docs(markdown, meta)
        print(f"# appended to {DOCS}")
    return rows


def _brief(row: dict[str, Any]) -> str:
    keys = ("phase", "failed", "connected", "connect_per_s", "idle_kib_per_session",
            "deliveries_per_s", "server_us_per_delivery", "latency_p50_ms", "latency_p99_ms",
            "max_gap_ms", "drain_p99_ms", "creates_per_s", "server_cpu", "loadgen_cpu",
            "extensions", "error_count", "deliveries", "expected", "foreign_cpu")  # fmt: skip
    return " ".join(f"{k}={row[k]}" for k in keys if row.get(k) not in (None, [], ""))


if __name__ == "__main__":
    asyncio.run(main())
