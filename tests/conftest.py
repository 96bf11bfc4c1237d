"""Shared fixtures: where the real PostgreSQL and Redis are, and skipping cleanly without them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

PG_URL = os.environ.get(
    "TIDINGS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of the real PostgreSQL test database; skips the test when none answers."""
    if not _reachable(PG_URL, 5432):
        pytest.skip(f"no PostgreSQL answers at {PG_URL} (set TIDINGS_TEST_PG_URL)")
    yield PG_URL


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the real Redis server; skips the test when none answers."""
    if not _reachable(REDIS_URL, 6379):
        pytest.skip(f"no Redis answers at {REDIS_URL} (set TIDINGS_TEST_REDIS_URL)")
    yield REDIS_URL
