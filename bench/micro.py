"""Micro-benchmarks behind choices the code makes (docs/BENCHMARKS.md, "Small costs").

    .venv/bin/python -m bench.micro

Each line is the best of several timeit repeats (the machine is shared; the best is the
least disturbed), or memory held as tracemalloc counts it.
"""

from __future__ import annotations

import asyncio
import timeit
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import field, make_dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry, Counter

from bridge.jsonwire import decode_command
from bridge.ws import _first_of
from server.auth import Authenticator
from server.engine.models import Notification, Priority
from server.tally import Tally

COMMANDS = {
    "ping": '{"type":"ping"}',
    "mark_read": '{"type":"mark_read","notification_id":12345}',
    "subscribe": '{"type":"subscribe","notification_types":["a","b","c"]}',
    "unknown type": '{"type":"bogus"}',
}


def best(fn: Callable[[], object], number: int = 100_000) -> float:
    """Seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


#: ``Notification``'s fields as a frozen slots dataclass, for comparison.
NotificationDataclass = make_dataclass(
    "NotificationDataclass",
    [
        (name, object, field(default=Notification._field_defaults[name]))
        if name in Notification._field_defaults
        else (name, object)
        for name in Notification._fields
    ],
    frozen=True,
    slots=True,
)


async def held_per_wait(
    wait: Callable[[list[asyncio.Future[None]]], Awaitable[object]], calls: int = 1000
) -> float:
    """Bytes held by one waiting call (its task included) on four futures."""
    loop = asyncio.get_running_loop()
    futures = [[loop.create_future() for _ in range(4)] for _ in range(calls)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(wait(fs)) for fs in futures]
    await asyncio.sleep(0.01)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    for fs in futures:
        fs[0].set_result(None)
    await asyncio.gather(*tasks)
    return held / calls


async def waits() -> None:
    async def wait(fs: list[asyncio.Future[None]]) -> object:
        return await asyncio.wait(fs, return_when=asyncio.FIRST_COMPLETED)

    async def first_of(fs: list[asyncio.Future[None]]) -> None:
        await _first_of(*fs)

    for name, fn in (("asyncio.wait", wait), ("bridge.ws._first_of", first_of)):
        print(f"{name:40} {await held_per_wait(fn) / 1024:8.2f} KiB held per waiting socket")


async def authentication() -> None:
    """A producer's token: verified (its signature checked), and remembered."""
    claims = {"sub": "svc", "exp": int(datetime.now(UTC).timestamp()) + 3600, "roles": ["admin"]}
    secret = "s" * 32
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    cases: list[tuple[str, Authenticator, str]] = [
        ("HS256", Authenticator(secret=secret), jwt.encode(claims, secret, algorithm="HS256"))
    ]
    for alg, private in (("RS256", rsa_key), ("ES256", ec_key)):
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = jwt.encode(claims, private, alg)
        cases.append((alg, Authenticator(public_key=pem.decode()), token))
    for alg, auth, token in cases:
        n = 2000
        start = timeit.default_timer()
        for _ in range(n):
            auth._verified.clear()  # verified every time
            await auth.authenticate(token)
        verified = (timeit.default_timer() - start) / n
        start = timeit.default_timer()
        for _ in range(n):
            await auth.authenticate(token)
        remembered = (timeit.default_timer() - start) / n
        print(
            f"authenticate {alg:28} {verified * 1e6:8.2f} µs verified, "
            f"{remembered * 1e6:.2f} µs remembered"
        )


def main() -> None:
    for name, frame in COMMANDS.items():
        cost = best(lambda frame=frame: decode_command(frame))  # type: ignore[misc]
        print(f"decode_command {name:25} {cost * 1e6:8.2f} µs")
    now = datetime.now(UTC)
    args = (1, "u", "t", "x", "", "{}", Priority.NORMAL, now)
    print(f"{'Notification (NamedTuple)':40} {best(lambda: Notification(*args)) * 1e9:8.0f} ns")
    dataclass_ns = best(lambda: NotificationDataclass(*args)) * 1e9
    print(f"{'the same as a frozen dataclass':40} {dataclass_ns:8.0f} ns")
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["type"], registry=registry)
    tally = Tally("t", "t", "type", registry=registry)
    print(f"{'Counter.labels(t).inc()':40} {best(lambda: counter.labels('a').inc()) * 1e9:8.0f} ns")
    print(f"{'Tally.inc(t)':40} {best(lambda: tally.inc('a')) * 1e9:8.0f} ns")
    asyncio.run(waits())
    asyncio.run(authentication())


if __name__ == "__main__":
    main()
