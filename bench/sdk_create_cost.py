"""The Python SDK's own work per ``Publisher.create``, the transport faked.

    .venv/bin/python bench/sdk_create_cost.py [--sdk clients/python/src] [--creates 20000]

The stub answers at once with a parsed ``CreateNotificationResponse`` (after serializing
the request, as gRPC would): what is left is what the SDK itself does per call (request,
idempotency key, metadata, deadline and retry wrapper, result conversion). ``--sdk``
picks the SDK's source tree (e.g. a ``git archive`` of another commit, with this tree's
generated ``tidings/v1``). Prints the best of ``--repeats`` runs, in µs per create.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any


async def cost(creates: int, repeats: int) -> float:
    """Seconds per create, the best of ``repeats`` runs of ``creates`` calls."""
    from tidings.client import Publisher
    from tidings.v1 import admin_pb2, notification_pb2

    shown = notification_pb2.Notification(
        id=123_456, user_id="u42", type="bench", title="c1 #2", message="m" * 100,
        data_json="{}", priority=notification_pb2.PRIORITY_NORMAL,
    )  # fmt: skip
    shown.created_at.GetCurrentTime()
    answer = admin_pb2.CreateNotificationResponse(notification=shown, created=True)
    raw = answer.SerializeToString()

    class Stub:
        async def CreateNotification(self, request: Any, **_: Any) -> Any:
            request.SerializeToString()
            return admin_pb2.CreateNotificationResponse.FromString(raw)

    publisher = Publisher("127.0.0.1:1", timeout=30.0, retries=0)
    publisher.__dict__["_stub"] = Stub()  # the cached stub, replaced
    message = "m" * 100
    best = float("inf")
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(creates):
                await publisher.create(f"u{i % 1000}", "bench", f"c1 #{i}", message=message)
            best = min(best, (time.perf_counter() - start) / creates)
    finally:
        await publisher.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sdk", help="the SDK's source tree (default: the installed one)")
    parser.add_argument("--creates", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.sdk:
        sys.path.insert(0, args.sdk)
    import tidings.client

    where = tidings.client.__file__ or "?"
    seconds = asyncio.run(cost(args.creates, args.repeats))
    print(f"{seconds * 1e6:.2f} µs per create (the SDK's own work; {where})")


if __name__ == "__main__":
    main()
