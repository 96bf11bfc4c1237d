"""SQLite: a group of keyed creates finds its earlier rows by index, one probe per key."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.engine.models import Content, NewNotification
from server.store import sqlite as sqlite_store
from server.store.migrate import upgrade
from server.store.sqlite import SqliteStore, keyed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def item(user: str, key: str, title: str) -> NewNotification:
    return NewNotification(user, Content(type="t", title=title), idempotency_key=key)


@pytest.mark.parametrize("pairs", [1, 2, 16, 500])
async def test_the_key_lookup_searches_the_index(tmp_path: Path, pairs: int) -> None:
    db = tmp_path / "keys.db"
    await upgrade(f"sqlite+aiosqlite:///{db}")
    with sqlite3.connect(db) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {keyed(pairs)}", ["x"] * 2 * pairs).fetchall()
    details = [row[3] for row in plan]
    # A scan reads the whole index, for every group of creates (~30 ms at 100 000 rows).
    assert not [d for d in details if d.startswith("SCAN notifications")], details
    assert any(
        d.startswith("SEARCH notifications USING INDEX uq_notifications_user_idempotency_key")
        for d in details
    ), details


async def test_a_retried_group_gets_its_first_rows(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}"
    await upgrade(url)
    store = SqliteStore(url)
    await store.open()
    try:

        async def create(items: list[NewNotification]) -> list[tuple[bool, int, str]]:
            result = await store.create(items, now=NOW, queue_cap=100, offline=lambda _: False)
            return [(o.created, o.notification.id, o.notification.title) for o in result.outcomes]

        first = await create([item(f"u{i % 3}", f"k{i}", f"first {i}") for i in range(10)])
        again = await create(
            [item(f"u{i % 3}", f"k{i}", f"again {i}") for i in range(12)] + [item("u9", "k0", "x")]
        )
        assert all(created for created, _, _ in first)
        assert again[:10] == [(False, n, title) for _, n, title in first]
        assert [created for created, _, _ in again[10:]] == [True, True, True]
        assert again[12][2] == "x"  # the same key for another user is another notification
    finally:
        await store.close()


async def test_a_sqlite_without_json_functions_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broadcast slice's rows come from json_each: a SQLite built without it must stop
    # the server at start with a clear error, not fail the first broadcast.
    url = f"sqlite+aiosqlite:///{tmp_path / 'nojson.db'}"
    await upgrade(url)
    monkeypatch.setattr(sqlite_store, "JSON_CHECK", "SELECT count(*) FROM no_json_each('[]')")
    store = SqliteStore(url)
    with pytest.raises(RuntimeError, match=r"needs SQLite 3\.38"):
        await store.open()
    await store.close()
