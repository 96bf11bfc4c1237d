"""PostgreSQL LISTEN/NOTIFY as the broker: no extra component when the store is PostgreSQL.

One dedicated asyncpg connection (LISTEN needs a session of its own, not a pooled
one) both listens and notifies. NOTIFY payloads are limited to 8000 bytes, which is
why only ids and small events cross it. When the connection drops (a restart, a
``pg_terminate_backend``), it reconnects with capped, jittered backoff and tells the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from tidings.client.backoff import Backoff

from server.broker.base import BrokerListener, BrokerUnavailable
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL = "tidings"


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+asyncpg://``) as a libpq DSN."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class PostgresBroker:
    """LISTEN/NOTIFY on one channel."""

    max_payload = 7900

    def __init__(
        self,
        url: str,
        *,
        channel: str = CHANNEL,
        name: str = "tidings-broker",
        retry_max: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._name = name
        self._channel = channel
        self._backoff = Backoff(base=0.05, cap=retry_max)
        self._timeout = timeout
        self._conn: asyncpg.Connection[Any] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: BrokerListener | None = None

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._task = asyncio.create_task(self._run(), name="tidings-broker-pg")

    async def publish(self, payload: bytes) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise BrokerUnavailable("not connected to PostgreSQL")
        try:
            await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload.decode())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._lost.set()
            raise BrokerUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await self._disconnect()

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("broker: cannot reach PostgreSQL (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            log.info("broker: listening on PostgreSQL channel %r", self._channel)
            assert self._listener is not None
            self._listener.on_connected()
            await self._lost.wait()
            log.warning("broker: lost the PostgreSQL connection; reconnecting")
            await self._disconnect()

    async def _connect(self) -> None:
        self._lost.clear()
        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout, server_settings={"application_name": self._name}
        )
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(self._channel, self._on_notify)
        self._conn = conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self._timeout)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if self._listener is not None:
            self._listener.on_message(str(payload).encode())

    def _on_terminated(self, _conn: Any) -> None:
        self._lost.set()
