"""SQLite nodes starting together on a new file: switching it to WAL waits its turn.

Where two connections would deadlock on the file's lock, SQLite answers "database is
locked" at once instead of waiting for the busy timeout (4 runs in 100 of four
concurrent upgrades of a new file failed so); the connection tries again until that
timeout has passed."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from server.store import engines


class Cursor:
    """Refuses its first ``busy`` statements as locked (or with ``error``)."""

    def __init__(self, busy: int, error: str = "database is locked") -> None:
        self.busy, self.error = busy, error
        self.ran: list[str] = []

    def execute(self, statement: str, *_: Any) -> None:
        self.ran.append(statement)
        if len(self.ran) <= self.busy:
            raise sqlite3.OperationalError(self.error)


def test_a_pragma_refused_as_locked_is_tried_again() -> None:
    cursor = Cursor(busy=3)
    engines._pragma(cursor, "journal_mode=WAL", wait_ms=5000)
    assert cursor.ran == ["PRAGMA journal_mode=WAL"] * 4


def test_a_pragma_still_locked_after_the_wait_fails() -> None:
    cursor = Cursor(busy=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        engines._pragma(cursor, "journal_mode=WAL", wait_ms=20)
    assert len(cursor.ran) >= 2


def test_another_error_is_not_tried_again() -> None:
    cursor = Cursor(busy=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        engines._pragma(cursor, "journal_mode=WAL", wait_ms=5000)
    assert len(cursor.ran) == 1
