"""The REST tests of ``test_rest.py``, unchanged, with the bridge and the engine apart.

In ``--role all`` the bridge calls the engine's servicers in-process; here it is a
``--role bridge`` process whose every REST call is a network gRPC call to a
``--role grpc`` process. Both paths must answer exactly alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.bridge.conftest import sqlite_url
from tests.bridge.test_rest import *  # noqa: F403 - the same tests, collected here again
from tests.harness import TEST_SECRET, ServerProcess


async def split(*args: str, database_url: str) -> AsyncIterator[ServerProcess]:
    """An engine process and a bridge process in front of it; yields the bridge."""
    async with ServerProcess(*args, database_url=database_url, role="grpc") as engine:
        bridge = ServerProcess(
            *args, "--upstream", engine.grpc_addr, database_url=database_url, role="bridge"
        )
        async with bridge:
            assert "in-process" not in bridge.output
            yield bridge


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def insecure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    db = tmp_path_factory.mktemp("insecure-split") / "tidings.db"
    async for bridge in split("--insecure", database_url=sqlite_url(db)):
        yield bridge


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    db = tmp_path_factory.mktemp("secure-split") / "tidings.db"
    async for bridge in split("--jwt-secret", TEST_SECRET, database_url=sqlite_url(db)):
        yield bridge


async def test_role_all_calls_the_engine_in_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = tmp_path_factory.mktemp("all") / "tidings.db"
    async with ServerProcess("--insecure", database_url=sqlite_url(db)) as server:
        assert "bridge calls the engine in-process" in server.output
