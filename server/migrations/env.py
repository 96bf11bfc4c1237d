"""Alembic environment for Tidings.

``server.store.migrate`` runs the migrations on a connection it hands over in
``config.attributes["connection"]``, inside its own transaction and lock. The
``alembic`` command line (the root ``alembic.ini``) works too: online against
``sqlalchemy.url`` (or ``-x url=...``), or offline with ``--sql``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import server.store.tables  # noqa: F401  (puts the tables on SQLModel.metadata)
from server.store.engines import make_engine, normalise_url

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online(url: str) -> None:
    """Connect to ``url`` and run the migrations (command-line use)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    """Write the migrations' SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=normalise_url(url),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or pass -x url=...")
    return url


handed_over = config.attributes.get("connection")
if handed_over is not None:
    run_migrations(handed_over)
elif context.is_offline_mode():
    run_offline(database_url())
else:
    asyncio.run(run_online(database_url()))
