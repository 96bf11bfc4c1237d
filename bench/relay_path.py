"""The browser path of a broadcast in one process, sockets left out: engine → relay
servicer → the bridge's links → frames handed to a stand-in socket.

An engine (``--store memory``, or a fresh SQLite file with ``--store sqlite``), the relay
servicer called in-process as ``--role all`` calls it, the bridge's ``RelayStream`` and
one ``RelaySessionLink`` per user, each with a handler waiting and a ``DirectWriter``
whose target takes every write (``write_now`` counts the frames and writes nothing).
``--users`` users connect; after a warm-up, ``--broadcasts`` broadcasts to all of them,
awaited one after another and delivered as they commit. Reports this process's CPU (all
threads) per delivery: what a delivery costs in Python between the commit and the
socket, without the ``write`` system call, the event loop's I/O and the clients. The
collector is set as the server sets it (``tidingsd.runtime.settle_memory``).

    .venv/bin/python bench/relay_path.py [--users 1000] [--broadcasts 60] [--store memory]

Runs the code of the checkout it sits in (an older checkout's copy measures that code).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop
from prometheus_client import CollectorRegistry
from tidings.v1 import stream_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bridge.metrics import BridgeMetrics
from bridge.relayframes import DeliveryFrames
from bridge.upstream import RelaySessionLink, RelayStream
from bridge.wswrite import DirectDeliveries, DirectWriter
from server.auth import Authenticator
from server.engine.engine import Engine, EngineConfig
from server.engine.models import Content
from server.rpc.inprocess import InProcessStubs
from server.rpc.relay import RelayServicer
from server.store import Store, open_store
from server.store.migrate import upgrade
from tidingsd.runtime import GC_YOUNG_THRESHOLD


class Health:
    """The health servicer, never asked here."""

    async def Check(self, request: object, context: object) -> None:
        raise NotImplementedError


class Delivered:
    """Frames taken by every socket, and an event for when ``goal`` is reached."""

    def __init__(self) -> None:
        self.count = 0
        self.goal = 0
        self.reached = asyncio.Event()

    def add(self, frames: int) -> None:
        self.count += frames
        if self.count >= self.goal:
            self.reached.set()

    async def until(self, goal: int, timeout: float) -> None:
        self.goal = goal
        self.reached.clear()
        if self.count < goal:
            async with asyncio.timeout(timeout):
                await self.reached.wait()


class Socket:
    """A socket that takes every write at once: counts the frames."""

    __slots__ = ("_delivered",)

    def __init__(self, delivered: Delivered) -> None:
        self._delivered = delivered

    def write_now(self, payloads: Sequence[bytes]) -> bool:
        self._delivered.add(len(payloads))
        return True


async def handler(link: RelaySessionLink, delivered: Delivered) -> None:
    """The socket's handler: waits in the link; what it is woken for, it counts."""
    while await link.receive_frame() is not None:
        delivered.add(1)


async def measure(store: Store, users: int, broadcasts: int) -> dict[str, float]:
    gc.collect()  # as the server settles its memory once started (tidingsd.runtime)
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 3, 10)
    engine = Engine(store, EngineConfig())
    await engine.start()
    relay_servicer = RelayServicer(engine, Authenticator(insecure=True))
    stubs = InProcessStubs.of(object(), object(), relay_servicer, Health())
    relay = RelayStream(stubs.relay)
    deliveries = DirectDeliveries(DeliveryFrames(), BridgeMetrics(CollectorRegistry()))
    delivered = Delivered()
    tasks: list[asyncio.Task[None]] = []
    for sid in range(1, users + 1):
        link = RelaySessionLink(relay, sid)
        relay.open(sid, (("x-tidings-user", f"u{sid}"),), stream_pb2.ConnectParams(), link)
        writer = DirectWriter(deliveries)
        writer.target = Socket(delivered)
        link.write_directly(writer)
        tasks.append(asyncio.create_task(handler(link, delivered)))
    recipients = [f"u{sid}" for sid in range(1, users + 1)]
    content = Content(type="bench", title="hello world", message="x" * 200)

    async def broadcast(count: int) -> None:
        goal = delivered.count + count * users
        for _ in range(count):
            await engine.broadcast(content, recipients)
        await delivered.until(goal, 120)

    await delivered.until(users, 60)  # the greetings
    await broadcast(5)
    cpu, wall = time.process_time(), time.perf_counter()
    await broadcast(broadcasts)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await relay.close()
    await engine.stop()
    count = users * broadcasts
    return {"us_cpu_per_delivery": 1e6 * cpu / count, "us_wall_per_delivery": 1e6 * wall / count}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.store == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'tidings.db'}"
            await upgrade(url)
        else:
            url = "memory://"
        result = await measure(open_store(url), args.users, args.broadcasts)
    print(json.dumps({"store": args.store, "users": args.users, **result}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=60)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    uvloop.run(main(parser.parse_args()))
