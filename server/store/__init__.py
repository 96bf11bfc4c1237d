"""Stores by URL scheme: ``sqlite://`` (the default), ``postgresql://``, ``memory://`` (tests)."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.engine.store import CreateResult, Store
from server.store.memory import MemoryStore

__all__ = ["CreateResult", "MemoryStore", "Store", "open_store"]

SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg")


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened; a SQL schema must be migrated first."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in SQLITE_SCHEMES:
        from server.store.sqlite import SqliteStore

        return SqliteStore(url)
    if scheme in POSTGRES_SCHEMES:
        from server.store.postgres import PostgresStore

        return PostgresStore(url)
    if scheme == "memory":
        return MemoryStore()
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
