"""The SQL schema: SQLModel table models for notifications, their shared contents and
known users.

A notification row holds what queries filter or sort on (user, type, priority, times,
read/seen/archived/queued state, idempotency key) and, for a single create, its
title, message and data inline. A broadcast writes its title, message and data once,
in a ``contents`` row, and one narrow row per recipient that points at it
(``content_id``, the heavy columns NULL); reads take the row's own column or the
content's (``rows.COLUMNS``). The content's key is named ``content_id`` in both tables
so that ``notifications LEFT JOIN contents USING (content_id)`` leaves every other
column name (``id`` above all) unambiguous.

The schema itself is created by the Alembic migrations in ``server/migrations``; these
models describe it for queries (and for the test that checks the two agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# SQLite only autoincrements an ``INTEGER PRIMARY KEY`` (a rowid alias), not ``BIGINT``.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")

# Partial-index predicates, spelled as the queries render them: SQLite only uses a
# partial index when the query's WHERE repeats the index's WHERE term for term.
KEYED = "idempotency_key IS NOT NULL"
QUEUED_SQLITE = "queued = 1"
QUEUED_POSTGRESQL = "queued"
EXPIRING = "expires_at IS NOT NULL"
SHARED = "content_id IS NOT NULL"
#: Each row has its content inline, or a ``content_id``.
HAS_CONTENT = (
    "content_id IS NOT NULL OR (title IS NOT NULL AND message IS NOT NULL "
    "AND data_json IS NOT NULL)"
)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores it naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ContentRow(SQLModel, table=True):
    """What the recipients of one broadcast share (one row per slice of it)."""

    __tablename__ = "contents"

    content_id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    title: str = Field(sa_type=String(200))
    message: str = Field(sa_type=Text)
    data_json: str = Field(sa_type=Text)


class NotificationRow(SQLModel, table=True):
    """One notification of one user; ``queued`` while it waits in the offline queue.

    ``title``, ``message`` and ``data_json`` are NULL when ``content_id`` names a
    ``contents`` row that holds them (a broadcast's recipient)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "uq_notifications_user_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text(KEYED),
            postgresql_where=text(KEYED),
        ),
        Index("ix_notifications_user_id_id", "user_id", "id"),
        Index(
            "ix_notifications_queued",
            "user_id",
            "id",
            sqlite_where=text(QUEUED_SQLITE),
            postgresql_where=text(QUEUED_POSTGRESQL),
        ),
        Index(
            "ix_notifications_expires_at",
            "expires_at",
            sqlite_where=text(EXPIRING),
            postgresql_where=text(EXPIRING),
        ),
        # Whether a content still has recipients, without scanning (orphan removal).
        Index(
            "ix_notifications_content_id",
            "content_id",
            sqlite_where=text(SHARED),
            postgresql_where=text(SHARED),
        ),
        CheckConstraint(HAS_CONTENT, name="ck_notifications_content"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    user_id: str = Field(sa_type=String(128))
    type: str = Field(sa_type=String(64))
    title: str | None = Field(default=None, sa_type=String(200))
    message: str | None = Field(default=None, sa_type=Text)
    data_json: str | None = Field(default=None, sa_type=Text)
    priority: str = Field(sa_type=String(16))
    created_at: datetime = Field(sa_type=UtcDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    queued: bool = Field(default=True, sa_type=Boolean)
    idempotency_key: str | None = Field(default=None, sa_type=String(255))
    seen_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    ignore_mutes: bool = Field(
        default=False, sa_type=Boolean, sa_column_kwargs={"server_default": false()}
    )
    #: The ``contents`` row holding this row's title, message and data. Not a declared
    #: foreign key (see migration 0003): the stores keep the reference whole.
    content_id: int | None = Field(default=None, sa_type=ID_TYPE)


class UserRow(SQLModel, table=True):
    """A user the service knows: it connected or received a notification."""

    __tablename__ = "users"

    user_id: str = Field(primary_key=True, sa_type=String(128))
    first_seen: datetime = Field(sa_type=UtcDateTime)
    dropped_since_connect: int = Field(
        default=0, sa_type=Integer, sa_column_kwargs={"server_default": text("0")}
    )


class MutedTypeRow(SQLModel, table=True):
    """A type of notification a user muted (``Preferences.muted_types``)."""

    __tablename__ = "muted_types"

    user_id: str = Field(primary_key=True, sa_type=String(128))
    type: str = Field(primary_key=True, sa_type=String(64))


notifications: Table = NotificationRow.__table__  # type: ignore[attr-defined]
contents: Table = ContentRow.__table__  # type: ignore[attr-defined]
users: Table = UserRow.__table__  # type: ignore[attr-defined]
muted_types: Table = MutedTypeRow.__table__  # type: ignore[attr-defined]
