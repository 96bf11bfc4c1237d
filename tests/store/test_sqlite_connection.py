"""SQLite's writing connection runs each transaction on its own thread, in order, and
hands back its result or its error; a transaction whose caller gave up before it
started never runs."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from server.store.sqlite_connection import SqliteConnection


def _insert(value: str) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        count: int = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        return count

    return run


async def test_transactions_run_in_order_off_the_loop_and_errors_come_back(
    tmp_path: Path,
) -> None:
    lite = SqliteConnection(str(tmp_path / "c.db"))
    await lite.open()
    try:
        counts = await asyncio.gather(*(lite.transaction(_insert(str(i))) for i in range(20)))
        assert counts == list(range(1, 21))
        where = await lite.transaction(lambda _conn: threading.current_thread())
        assert where is not threading.current_thread()

        def failing(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES ('rolled back')")
            raise ValueError("refused")

        with pytest.raises(ValueError, match="refused"):
            await lite.transaction(failing)
        assert (
            await lite.transaction(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])
            == 20
        )
    finally:
        await lite.close()
        lite.release()


async def test_a_transaction_whose_caller_was_cancelled_before_it_ran_never_runs(
    tmp_path: Path,
) -> None:
    lite = SqliteConnection(str(tmp_path / "c.db"))
    await lite.open()
    try:
        await lite.transaction(_insert("first"))
        entered, release = threading.Event(), threading.Event()

        def holding(_conn: sqlite3.Connection) -> None:
            entered.set()
            release.wait(10)

        held = asyncio.ensure_future(lite.transaction(holding))
        await asyncio.to_thread(entered.wait, 10)
        queued = asyncio.ensure_future(lite.transaction(_insert("never")))
        await asyncio.sleep(0)  # the job is queued behind the one holding the thread
        queued.cancel()
        release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert (
            await lite.transaction(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 1
        )
    finally:
        await lite.close()
        lite.release()


def test_a_result_for_a_loop_that_closed_does_not_stop_the_connection(tmp_path: Path) -> None:
    # A caller's event loop may be gone by the time its transaction ends (a process
    # shutting down, a test's loop): later transactions must still run.
    lite = SqliteConnection(str(tmp_path / "c.db"))
    entered, release = threading.Event(), threading.Event()

    def holding(_conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)

    async def leave_one_running() -> asyncio.Future[None]:
        await lite.open()
        running = asyncio.ensure_future(lite.transaction(holding))
        await asyncio.to_thread(entered.wait, 10)
        return running

    asyncio.run(leave_one_running())  # cancels the waiting call and closes its loop
    release.set()  # the transaction ends with no loop to hand its result to

    async def go_on() -> int:
        try:
            async with asyncio.timeout(10):
                return await lite.transaction(_insert("after"))
        finally:
            await lite.close()
            lite.release()

    assert asyncio.run(go_on()) == 1
