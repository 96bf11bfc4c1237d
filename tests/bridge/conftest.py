"""Bridge fixtures: real ``tidings serve`` processes (engine + bridge in one process)
on ephemeral ports, each with its own SQLite file.

Servers shared by a module are module-scoped and run on the module's event loop;
tests keep out of each other's way by using fresh user ids (``uid``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.harness import TEST_SECRET, ServerProcess


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def insecure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """An insecure-mode node: everyone is admin, ``user_id`` / ``X-Tidings-User`` pick the user."""
    db = tmp_path_factory.mktemp("insecure") / "tidings.db"
    async with ServerProcess("--insecure", database_url=sqlite_url(db)) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A secure-mode node: HS256 tokens signed with ``TEST_SECRET``."""
    db = tmp_path_factory.mktemp("secure") / "tidings.db"
    async with ServerProcess("--jwt-secret", TEST_SECRET, database_url=sqlite_url(db)) as server:
        yield server


@pytest.fixture
def uid() -> str:
    """A user id no other test uses."""
    return "u-" + uuid.uuid4().hex[:12]
