"""Stores by URL: ``memory://`` for tests, anything else a SQL database (SQLite, PostgreSQL)."""

from __future__ import annotations

from server.store.base import CreateResult, Store
from server.store.memory import MemoryStore
from server.store.sql import SqlStore

__all__ = ["CreateResult", "MemoryStore", "SqlStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened; a SQL schema must be migrated first."""
    if url.startswith("memory://"):
        return MemoryStore()
    return SqlStore(url)
