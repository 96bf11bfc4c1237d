"""Driver errors → the engine's ``StoreUnavailable``, for failures that mean "no database".

A lost database surfaces in many shapes: ``OSError`` from the socket (refused, reset,
timed out), asyncpg's connection errors, SQLSTATEs a server sends when it shuts down
or refuses connections, SQLAlchemy's "connection invalidated" and pool timeouts, and
SQLite's "unable to open" or "disk I/O error". ``guard`` turns every one of them into
``StoreUnavailable`` (the gRPC edge answers ``UNAVAILABLE``: retry later) and reports
each call's outcome to the store's ``StoreHealth``. Any other error — a bug, a
constraint — passes through untouched.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import sqlalchemy.exc

from server.engine.errors import StoreUnavailable
from server.engine.store import Store
from server.engine.store_health import StoreHealth

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C", bound=type)

#: SQLSTATE classes and codes of a server that cannot be used: connection exceptions
#: (08), operator intervention (57P: shutdown, crash, starting up, database dropped),
#: insufficient resources (53), system errors (58), no such database, bad credentials.
UNREACHABLE_SQLSTATES = ("08", "57P", "53", "58", "3D000", "28")

#: SQLite messages that mean the file cannot be used at all.
SQLITE_UNUSABLE = ("unable to open", "disk i/o error", "readonly database")


#: The ``Store`` calls that reach the database (``close`` only lets go of it).
STORE_CALLS = tuple(
    name
    for name, value in vars(Store).items()
    if inspect.iscoroutinefunction(value) and not name.startswith("_") and name != "close"
)


class HasHealth(Protocol):
    health: StoreHealth


H = TypeVar("H", bound=HasHealth)


def unreachable(exc: BaseException) -> str | None:
    """Why ``exc`` means the database cannot be used now, or None if it means something else."""
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, StoreUnavailable):
            return link.reason
        if _is_unreachable(link):
            return _first_line(link)
        orig = getattr(link, "orig", None)
        link = orig if isinstance(orig, BaseException) else link.__cause__
    return None


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc).lower().startswith(SQLITE_UNUSABLE)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate.startswith(UNREACHABLE_SQLSTATES):
            return True
        return sqlstate == "55000" and "not currently accepting connections" in str(exc)
    # asyncpg's own "connection is closed" (an InterfaceError without a SQLSTATE).
    return type(exc).__module__.startswith("asyncpg") and "connection is closed" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, sqlalchemy.exc.StatementError) and exc.orig is not None:
        text = str(exc.orig).strip()
    return (text.splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def guarded(
    method: Callable[Concatenate[H, P], Awaitable[T]],
) -> Callable[Concatenate[H, P], Awaitable[T]]:
    """``method`` of a store with ``health``, translating and reporting unreachability."""

    @functools.wraps(method)
    async def call(self: H, /, *args: P.args, **kwargs: P.kwargs) -> T:
        began = self.health.outages
        try:
            result = await method(self, *args, **kwargs)
        except Exception as exc:
            reason = unreachable(exc)
            if reason is None:
                raise
            self.health.failed(reason)
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(reason) from exc
        self.health.succeeded(began)
        return result

    return call


def guard_store(cls: C) -> C:
    """Class decorator: ``guarded`` on each call of the ``Store`` protocol but ``close``."""
    for name in STORE_CALLS:
        setattr(cls, name, guarded(getattr(cls, name)))
    return cls
