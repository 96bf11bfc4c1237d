"""Bridge benchmark: delivery round trip and the memory cost of idle WebSockets.

Runs one ``tidings serve --insecure`` process (engine + bridge, SQLite in a temporary
directory) on loopback and measures, from this process:

* REST create → WebSocket receive for one user: ``POST /api/v1/notifications``, then
  wait for that notification's frame on the user's socket (sequential, p50/p99);
* WebSocket ping → pong (the bridge and engine session path without the store), and
  the same over a direct gRPC ``Connect`` stream: the difference is the bridge's cost;
* server RSS before and after opening N idle sockets (each greeted), per socket.

Usage (from the repository root)::

    .venv/bin/python -m bench.bridge_latency [--iterations 500] [--sockets 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import orjson
from tidings.v1 import stream_pb2, stream_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect

from tests.harness import ServerProcess


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, samples_s: list[float]) -> str:
    ms = [s * 1000 for s in samples_s]
    return (
        f"{name}: n={len(ms)} p50={percentile(ms, 50):.2f} ms p99={percentile(ms, 99):.2f} ms "
        f"mean={statistics.fmean(ms):.2f} ms max={max(ms):.2f} ms"
    )


async def greeted(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=30, max_size=None)  # offers permessage-deflate
    async with asyncio.timeout(30):
        hello = orjson.loads(await ws.recv())
    assert hello["type"] == "connection_established", hello
    return ws


async def round_trips(server: ServerProcess, iterations: int) -> list[float]:
    """REST create → the notification frame on the user's socket, one at a time."""
    ws = await greeted(f"{server.ws_url}?user_id=bench")
    samples = []
    body = {"user_id": "bench", "type": "bench", "title": "round trip", "data": {"i": 0}}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        for i in range(iterations + 20):
            body["data"] = {"i": i}
            started = time.perf_counter()
            response = await http.post("/api/v1/notifications", json=body)
            created = response.json()["id"]
            async with asyncio.timeout(30):
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame["type"] == "notification" and frame["notification"]["id"] == created:
                        break
            if i >= 20:  # warm-up
                samples.append(time.perf_counter() - started)
    await ws.close()
    return samples


async def ping_pongs(server: ServerProcess, iterations: int) -> list[float]:
    """WebSocket ping → pong, one at a time (kept under the client rate limit)."""
    ws = await greeted(f"{server.ws_url}?user_id=bench-ping")
    samples = []
    for i in range(iterations + 20):
        started = time.perf_counter()
        await ws.send('{"type":"ping"}')
        async with asyncio.timeout(30):
            while orjson.loads(await ws.recv())["type"] != "pong":
                pass
        if i >= 20:
            samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.025)  # 40/s: below --max-client-rate
    await ws.close()
    return samples


async def grpc_ping_pongs(server: ServerProcess, iterations: int) -> list[float]:
    """The same ping → pong over a direct gRPC stream, for comparison."""
    samples = []
    ping = stream_pb2.ConnectRequest(ping=stream_pb2.PingCommand())
    async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
        call = stream_pb2_grpc.NotificationStreamStub(channel).Connect(
            metadata=(("x-tidings-user", "bench-grpc"),)
        )
        await call.read()  # connection_established
        for i in range(iterations + 20):
            started = time.perf_counter()
            await call.write(ping)
            async with asyncio.timeout(30):
                while True:
                    answer = await call.read()
                    assert isinstance(answer, stream_pb2.ConnectResponse)
                    if answer.WhichOneof("kind") == "pong":
                        break
            if i >= 20:
                samples.append(time.perf_counter() - started)
            await asyncio.sleep(0.025)
        call.cancel()
    return samples


async def idle_memory(server: ServerProcess, count: int) -> tuple[int, int]:
    """(RSS before, RSS after) in KiB around opening ``count`` greeted idle sockets."""
    assert server.proc is not None
    pid = server.proc.pid
    # Warm up: the first sockets pay for code paths, caches and allocator arenas.
    warm = [await greeted(f"{server.ws_url}?user_id=warm-{i}") for i in range(50)]
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    sockets: list[ClientConnection] = []
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        sockets += await asyncio.gather(
            *(greeted(f"{server.ws_url}?user_id=idle-{i}") for i in batch)
        )
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()
    return before, after


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.sockets + 256)), hard))

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        async with ServerProcess("--insecure", database_url=url) as server:
            print(f"# {time.strftime('%Y-%m-%d')} · Python {platform.python_version()} · "
                  f"{platform.machine()} · {platform.system()} · loopback")  # fmt: skip
            print(summary("REST create -> WS receive", await round_trips(server, args.iterations)))
            print(summary("WS ping -> pong", await ping_pongs(server, args.iterations)))
            print(summary("gRPC ping -> pong", await grpc_ping_pongs(server, args.iterations)))
            before, after = await idle_memory(server, args.sockets)
            per = (after - before) / args.sockets
            print(
                f"idle WebSockets: {args.sockets} sockets, server RSS {before / 1024:.1f} MiB -> "
                f"{after / 1024:.1f} MiB, {per:.1f} KiB per socket"
            )


if __name__ == "__main__":
    asyncio.run(main())
