"""Shared fixtures: where the real PostgreSQL and Redis are, and skipping cleanly without them."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The URL of the real PostgreSQL test database; skips the test when none answers."""
    if not _reachable(PG_URL, 5432):
        pytest.skip(f"no PostgreSQL answers at {PG_URL} (set TIDINGS_TEST_PG_URL)")
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the real Redis server; skips the test when none answers."""
    if not _reachable(REDIS_URL, 6379):
        pytest.skip(f"no Redis answers at {REDIS_URL} (set TIDINGS_TEST_REDIS_URL)")
    return REDIS_URL


@pytest.fixture
async def pg_database_url(pg_url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test (its URL), dropped afterwards.

    A whole database rather than a schema, so that server subprocesses can be pointed
    at it with a plain URL.
    """
    import asyncpg

    name = f"tidings_t_{uuid.uuid4().hex[:16]}"
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(pg_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for one test: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url
