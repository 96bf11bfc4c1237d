"""The store alone: broadcasts committed together, as the writer groups them.

On a fresh SQLite file migrated to the head of the code it runs with, ``--rounds``
creates, each holding ``--together`` broadcasts to the same ``--users`` users (one
``Content`` object per broadcast, every user online, each create also taking the
previous create's rows out of the queues, as the delivery marks do). Reports this
process's CPU (all threads: the store's own included) per recipient, over the rounds
after ``--warmup``.

    .venv/bin/python bench/grouped_broadcasts.py [--together 4] [--users 1000]

Runs the ``server`` package of the checkout it sits in (copy it into an older
checkout to measure that code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from server.engine.models import Content, NewNotification
from server.store import open_store
from server.store.migrate import upgrade


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tidings.db'}"
        await upgrade(url)
        store = open_store(url)
        await store.open()
        users = [f"u{i}" for i in range(args.users)]
        cpu, recipients, delivered = 0.0, 0, list[int]()
        try:
            for round_ in range(args.warmup + args.rounds):
                items: list[NewNotification] = []
                for k in range(args.together):
                    content = Content(type="bench", title=f"t{round_}-{k}", message="m" * 200)
                    items += (NewNotification(u, content, user_id_checked=True) for u in users)
                start = time.process_time()
                result = await store.create(
                    items,
                    now=datetime.now(UTC),
                    queue_cap=1000,
                    offline=lambda _: False,
                    delivered=delivered,
                )
                spent = time.process_time() - start
                delivered = [o.notification.id for o in result.outcomes]
                if round_ >= args.warmup:
                    cpu += spent
                    recipients += len(items)
        finally:
            await store.close()
    return {
        "together": args.together,
        "users": args.users,
        "us_cpu_per_recipient": round(cpu / recipients * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--together", type=int, default=4, help="broadcasts per create")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
