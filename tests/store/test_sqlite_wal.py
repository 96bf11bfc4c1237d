"""SQLite's write-ahead log stays bounded under sustained writes and is truncated when idle."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from server.engine.models import Content, NewNotification
from server.store.migrate import upgrade
from server.store.sqlite import SqliteStore
from tests.waiting import until

KIB = 1024


def wal_size(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


async def test_the_wal_is_reset_past_its_limit_and_truncated_when_idle(tmp_path: Path) -> None:
    db = tmp_path / "tidings.db"
    url = f"sqlite+aiosqlite:///{db}"
    await upgrade(url)
    limit = 256 * KIB
    # Passive checkpoints rarely here: the size bound must not depend on their luck.
    store = SqliteStore(url, wal_limit=limit, checkpoint_every=0.5)
    await store.open()
    try:
        content = Content(type="t", title="x", message="m" * 2000)
        sizes = []
        for batch in range(150):  # ~150 × 60 KiB of rows: the limit is passed many times
            items = [NewNotification(f"u{batch % 7}-{i}", content) for i in range(30)]
            await store.create(
                items, now=datetime.now(UTC), queue_cap=100, offline=lambda _user: True
            )
            sizes.append(wal_size(db))
        written = 150 * 30 * 2000
        resets = sum(1 for before, after in pairwise(sizes) if after < before)
        assert resets >= 5, sizes
        # At most the limit plus one transaction's pages (about 200 KiB here), with room.
        assert max(sizes) < limit + 512 * KIB < written / 10, max(sizes)

        async def truncated() -> bool:
            return wal_size(db) == 0

        await until(truncated, within=10.0)
        assert len(await store.fetch_range(0, 10**9, 10_000)) == 150 * 30
    finally:
        await store.close()
