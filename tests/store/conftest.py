"""Store fixtures: every contract test runs on memory, SQLite (a temporary file) and
PostgreSQL (a fresh schema per test, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.schema import CreateSchema, DropSchema

from server.store import MemoryStore, Store
from server.store.engines import make_engine
from server.store.migrate import upgrade
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore

SqlStore = SqliteStore | PostgresStore

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass(frozen=True)
class Database:
    """An empty database (or PostgreSQL schema) for one test."""

    url: str
    schema: str | None = None

    async def upgrade(self) -> None:
        await upgrade(self.url, schema=self.schema)

    def store(self) -> SqlStore:
        if self.schema is None:
            return SqliteStore(self.url)
        return PostgresStore(self.url, schema=self.schema)


@asynccontextmanager
async def empty_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    if backend == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}")
        return
    pg_url: str = request.getfixturevalue("pg_url")
    schema = f"t_{uuid.uuid4().hex}"
    admin = make_engine(pg_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(CreateSchema(schema))
        yield Database(pg_url, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
        await admin.dispose()


@asynccontextmanager
async def migrated_store(database: Database) -> AsyncIterator[SqlStore]:
    await database.upgrade()
    store = database.store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=SQL_BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty SQLite file, or a fresh PostgreSQL schema dropped after the test."""
    async with empty_database(request.param, request, tmp_path) as db:
        yield db


@pytest.fixture
async def sql_store(database: Database) -> AsyncIterator[SqlStore]:
    """A SQL store (SQLite or PostgreSQL) on a freshly migrated database."""
    async with migrated_store(database) as store:
        yield store


@pytest.fixture(params=["memory", *SQL_BACKENDS])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each implementation of ``Store``, open and empty."""
    if request.param == "memory":
        memory = MemoryStore()
        await memory.open()
        yield memory
        await memory.close()
        return
    async with (
        empty_database(request.param, request, tmp_path) as db,
        migrated_store(db) as sql,
    ):
        yield sql
