"""The inbox tests of ``test_inbox.py``, unchanged, with the bridge and the engine apart:
REST calls are network gRPC calls and WebSocket sessions ride the relay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.bridge.conftest import sqlite_url
from tests.bridge.test_inbox import *  # noqa: F403 - the same tests, collected here again
from tests.bridge.test_rest_network import split
from tests.harness import ServerProcess


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def insecure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    db = tmp_path_factory.mktemp("inbox-split") / "tidings.db"
    async for bridge in split("--insecure", database_url=sqlite_url(db)):
        yield bridge
