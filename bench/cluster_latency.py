"""Cross-node delivery: latency and throughput for each broker, against one node as reference.

Starts real ``tidings serve`` processes on a fresh PostgreSQL database: for each
broker (PostgreSQL LISTEN/NOTIFY, Redis pub/sub), node A takes the creates and node B
holds the subscribers; the reference is one node doing both, measured in the same run.

    .venv/bin/python bench/cluster_latency.py [--users 100] [--rate 200] [--seconds 5]

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
from tidings.v1 import admin_pb2, admin_pb2_grpc, stream_pb2, stream_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def fresh_database() -> str:
    name = f"tidings_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def scenario(label: str, broker: str | None, args: argparse.Namespace) -> dict[str, object]:
    db = await fresh_database()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
    extra = ["--insecure"] + (["--broker-url", broker] if broker else [])
    nodes = [await ServerProcess(*extra, database_url=url, role="grpc").start()]
    if broker:
        nodes.append(await ServerProcess(*extra, database_url=url, role="grpc").start())
    producer_node, consumer_node = nodes[0], nodes[-1]
    sent: dict[int, float] = {}
    latencies: list[float] = []
    received = 0
    wanted = {"latencies": 0, "received": 0}
    reached = asyncio.Event()
    try:
        async with (
            grpc.aio.insecure_channel(producer_node.grpc_addr) as pch,
            grpc.aio.insecure_channel(consumer_node.grpc_addr) as cch,
        ):
            admin = admin_pb2_grpc.NotificationAdminServiceStub(pch)
            users = [f"u{i}" for i in range(args.users)]
            calls = []
            for user in users:
                call = stream_pb2_grpc.NotificationStreamStub(cch).Connect(
                    metadata=(("x-tidings-user", user),)
                )
                await call.read()  # connection_established
                calls.append(call)
            if broker:  # let node A learn that the users are online on B
                await asyncio.sleep(2.5)

            async def reader(call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
                nonlocal received
                while True:
                    msg = await call.read()
                    if not isinstance(msg, stream_pb2.ConnectResponse):
                        return  # EOF
                    if msg.WhichOneof("kind") == "notification":
                        now = time.perf_counter()
                        received += 1
                        title = msg.notification.notification.title
                        if title.isdigit() and int(title) in sent:
                            latencies.append(now - sent[int(title)])
                        if len(latencies) >= wanted["latencies"] and received >= wanted["received"]:
                            reached.set()

            readers = [asyncio.create_task(reader(c)) for c in calls]

            # 1. latency at a fixed rate
            interval = 1 / args.rate
            start = time.perf_counter()
            total = int(args.rate * args.seconds)
            wanted["latencies"] = total
            reached.clear()
            pending = []
            for i in range(total):
                due = start + i * interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent[i] = time.perf_counter()
                req = admin_pb2.CreateNotificationRequest(
                    user_id=users[i % len(users)], type="bench", title=str(i)
                )
                pending.append(asyncio.ensure_future(admin.CreateNotification(req)))
            await asyncio.gather(*pending)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reached.wait(), 10)

            # 2. throughput: as fast as 64 concurrent producers go
            before = received
            burst = args.burst
            reached.clear()
            wanted["received"] = before + burst
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with sem:
                    await admin.CreateNotification(
                        admin_pb2.CreateNotificationRequest(
                            user_id=users[i % len(users)], type="bench", title="burst"
                        )
                    )

            await asyncio.gather(*(one(i) for i in range(burst)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reached.wait(), 30)
            elapsed = time.perf_counter() - t0
            for task in readers:
                task.cancel()
            for call in calls:
                call.cancel()
    finally:
        for node in nodes:
            await node.stop()
        await drop_database(db)
    if not latencies:
        raise RuntimeError(f"{label}: nothing delivered (received={received})\n" + nodes[-1].output)
    return {
        "scenario": label,
        "delivered": f"{len(latencies)}/{total}",
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(pct(latencies, 99) * 1e3, 2),
        "throughput_per_s": round((received - before) / elapsed),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=5000)
    args = parser.parse_args()
    results = [
        await scenario("one node (reference)", None, args),
        await scenario("2 nodes, PostgreSQL NOTIFY", PG, args),
        await scenario("2 nodes, Redis pub/sub", f"{REDIS}?channel=bench-{uuid.uuid4().hex}", args),
    ]
    ref = results[0]
    for r in results:
        r["p99_vs_ref"] = round(float(str(r["p99_ms"])) / float(str(ref["p99_ms"])), 2)
        r["throughput_vs_ref"] = round(
            float(str(r["throughput_per_s"])) / float(str(ref["throughput_per_s"])), 2
        )
        print(json.dumps(r))
    print()
    print("| scenario | delivered | p50 ms | p99 ms | p99 / ref | throughput /s | / ref |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['scenario']} | {r['delivered']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['p99_vs_ref']} | {r['throughput_per_s']} | {r['throughput_vs_ref']} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
