"""Batch create throughput: notifications/s through ``CreateNotifications`` on SQLite.

Starts ``tidings serve --role grpc --insecure`` on a fresh SQLite file, then
``--producers`` concurrent producers each send batches of ``--batch`` notifications
(for distinct users, a 100-character message, no idempotency key) until ``--total``
notifications are committed; reports notifications/s and the server's CPU per
notification. ``--sdk`` sends through ``tidings.client.Publisher.create_many`` (which
adds a key per item and parses every answer into dataclasses) instead of the raw stub.

    .venv/bin/python bench/batch_create.py [--producers 16] [--batch 500] [--total 200000]

Loopback only; the run is bounded by ``--total`` and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc
from tidings.client import NewNotification, Publisher
from tidings.v1 import admin_pb2, admin_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import ServerProcess

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def request(producer: int, batch: int, size: int) -> admin_pb2.CreateNotificationsRequest:
    return admin_pb2.CreateNotificationsRequest(
        notifications=[
            admin_pb2.CreateNotificationRequest(
                user_id=f"u{producer}-{(batch * size + i) % 1000}",
                type="bench",
                title=f"batch {batch} item {i}",
                message="m" * 100,
                data_json='{"n":1}',
            )
            for i in range(size)
        ]
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tidings.db'}"
        server = await ServerProcess("--insecure", database_url=url, role="grpc").start()
        assert server.proc is not None
        try:
            batches = args.total // args.batch
            per_producer = [range(p, batches, args.producers) for p in range(args.producers)]
            async with grpc.aio.insecure_channel(server.grpc_addr) as channel:
                stub = admin_pb2_grpc.NotificationAdminServiceStub(channel)
                # Warm-up: one batch, not counted.
                await stub.CreateNotifications(request(0, 0, args.batch))
                publisher = Publisher(server.grpc_addr, timeout=60.0) if args.sdk else None

                # Built before the clock starts, so that the producers cost little.
                pool = [request(p, p, args.batch) for p in range(args.producers)]

                async def produce(mine: range) -> int:
                    made = 0
                    for b in mine:
                        if publisher is not None:
                            items = [
                                NewNotification(
                                    f"u{b % args.producers}-{i}", "bench", f"b{b} i{i}", "m" * 100
                                )
                                for i in range(args.batch)
                            ]
                            made += sum(r.created for r in await publisher.create_many(items))
                        else:
                            answer = await stub.CreateNotifications(
                                pool[b % args.producers], timeout=60.0
                            )
                            made += sum(answer.created)
                    return made

                spy = None
                if args.profile:
                    spy = await asyncio.create_subprocess_exec(
                        str(Path(sys.executable).parent / "py-spy"), "record", "--format",
                        {".json": "speedscope", ".svg": "flamegraph"}.get(
                            Path(args.profile).suffix, "raw"
                        ),
                        "-o", args.profile, "-p", str(server.proc.pid), "--threads",
                        stdout=asyncio.subprocess.DEVNULL,
                    )  # fmt: skip
                    await asyncio.sleep(1.0)
                cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
                async with asyncio.timeout(args.deadline):
                    made = sum(await asyncio.gather(*(produce(m) for m in per_producer)))
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await asyncio.wait_for(spy.wait(), 30)
                elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server.proc.pid) - cpu0
                if publisher is not None:
                    await publisher.close()
            db_bytes = (Path(tmp) / "tidings.db").stat().st_size
        finally:
            await server.stop()
    return {
        "path": "sdk Publisher.create_many" if args.sdk else "grpc stub",
        "producers": args.producers,
        "batch": args.batch,
        "notifications": made,
        "seconds": round(elapsed, 2),
        "notifications_per_s": round(made / elapsed),
        "server_cpu_cores": round(cpu / elapsed, 2),
        "server_us_cpu_per_notification": round(cpu / made * 1e6, 1),
        "db_mib": round(db_bytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--producers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--total", type=int, default=200_000)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy record the server (.svg, .json or collapsed text)",
    )
    parser.add_argument("--sdk", action="store_true", help="through Publisher.create_many")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
