"""SQLite write-ahead log under sustained creates: does it stay bounded, and shrink when idle?

Starts ``tidings serve --role grpc --insecure`` on a fresh SQLite file, then
``--producers`` concurrent producers call ``CreateNotification`` (one notification per
call, for 1 000 users, all offline) as fast as the server answers, for ``--seconds``;
the WAL file's size is sampled every ``--every`` seconds, and again after ``--idle``
seconds without writes. Reports creates/s, the WAL's largest size, and create latency
(p50, p99, max: a checkpoint that stalled creates shows in the max).

    .venv/bin/python bench/wal_growth.py [--seconds 180] [--producers 32]

Loopback only; the run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
from tidings.v1 import admin_pb2, admin_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

MIB = 2**20


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tidings.db"
        wal = Path(f"{db}-wal")
        server = await ServerProcess(
            "--insecure", database_url=f"sqlite+aiosqlite:///{db}", role="grpc"
        ).start()
        samples: list[tuple[float, int]] = []
        latencies: list[float] = []
        try:
            async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
                stub = admin_pb2_grpc.NotificationAdminServiceStub(channel)
                start = time.perf_counter()
                end = start + args.seconds

                async def produce(p: int) -> None:
                    i = 0
                    while time.perf_counter() < end:
                        request = admin_pb2.CreateNotificationRequest(
                            user_id=f"u{(p * 7919 + i) % 1000}",
                            type="bench",
                            title=f"p{p} n{i}",
                            message="m" * 200,
                        )
                        t0 = time.perf_counter()
                        await stub.CreateNotification(request, timeout=30.0)
                        latencies.append(time.perf_counter() - t0)
                        i += 1

                async def sample() -> None:
                    while time.perf_counter() < end:
                        samples.append((time.perf_counter() - start, size(wal)))
                        await asyncio.sleep(args.every)

                await asyncio.gather(sample(), *(produce(p) for p in range(args.producers)))
                elapsed = time.perf_counter() - start
                after_load = size(wal)
                await asyncio.sleep(args.idle)
                after_idle = size(wal)
                db_size = size(db)
        finally:
            await server.stop()
    return {
        "seconds": round(elapsed, 1),
        "producers": args.producers,
        "creates": len(latencies),
        "creates_per_s": round(len(latencies) / elapsed),
        "wal_max_mib": round(max(s for _, s in samples) / MIB, 1),
        "wal_at_end_mib": round(after_load / MIB, 1),
        f"wal_after_{args.idle:g}s_idle_mib": round(after_idle / MIB, 1),
        "db_mib": round(db_size / MIB, 1),
        "wal_by_minute_mib": [
            round(max(s for t, s in samples if m * 60 <= t < (m + 1) * 60) / MIB, 1)
            for m in range(int(elapsed // 60) + 1)
            if any(m * 60 <= t < (m + 1) * 60 for t, _ in samples)
        ],
        "create_ms_p50_p99_max": [
            round(pct(latencies, 50) * 1e3, 2),
            round(pct(latencies, 99) * 1e3, 2),
            round(max(latencies) * 1e3, 2),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--producers", type=int, default=32)
    parser.add_argument("--every", type=float, default=0.5, help="sampling interval (s)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle at the end")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
