"""A broadcast's content stored once: a ``contents`` table that recipient rows point at.

``notifications`` gains ``content_id`` (the ``contents`` row it shares, indexed where
it is set) and its title, message and data become nullable: a broadcast writes them
once, in ``contents``, and one narrow row per recipient. A check keeps every row
readable (its content inline, or a ``content_id``). Existing rows keep their content
inline and are not changed.

``content_id`` is not declared a foreign key: PostgreSQL checks one with a trigger per
inserted row, 142 ms of the 361 ms a slice of 5 000 recipients took to insert (on a
loaded machine). The stores keep the reference whole themselves: a content is inserted
by the statement that inserts its rows, no later create points at it, and it is deleted
only once no row does (``server/store/rows.py``, ``ORPHANS``).

On SQLite a column's nullability only changes by copying the table (``batch_alter_table``
recreates it, with its indexes); the AUTOINCREMENT counter is carried over, so that an
id deleted before the migration is never handed out again, and the offline queue's
index is built last again (see ``_queue_index_last``). PostgreSQL alters in place.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only autoincrements an INTEGER PRIMARY KEY (a rowid alias), not a BIGINT.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HEAVY = (("title", sa.String(200)), ("message", sa.Text()), ("data_json", sa.Text()))
HAS_CONTENT = (
    "content_id IS NOT NULL OR (title IS NOT NULL AND message IS NOT NULL "
    "AND data_json IS NOT NULL)"
)
SEQUENCE = "SELECT seq FROM sqlite_sequence WHERE name = 'notifications'"


def upgrade() -> None:
    op.create_table(
        "contents",
        sa.Column("content_id", ID, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
    )
    seq = _sqlite_sequence()
    with op.batch_alter_table(
        "notifications", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        for name, type_ in HEAVY:
            batch.alter_column(name, existing_type=type_, nullable=True)
        # No foreign key: see the module docstring.
        batch.add_column(sa.Column("content_id", ID, nullable=True))
        batch.create_check_constraint("ck_notifications_content", HAS_CONTENT)
    _restore_sqlite_sequence(seq)
    _queue_index_last()
    # Whether a content still has recipients, without scanning (orphan removal).
    op.create_index(
        "ix_notifications_content_id",
        "notifications",
        ["content_id"],
        sqlite_where=sa.text("content_id IS NOT NULL"),
        postgresql_where=sa.text("content_id IS NOT NULL"),
    )


def downgrade() -> None:
    # Every shared content goes back inline into each of its rows.
    for name, _ in HEAVY:
        op.execute(
            f"UPDATE notifications SET {name} = (SELECT contents.{name} FROM contents "
            "WHERE contents.content_id = notifications.content_id) "
            "WHERE content_id IS NOT NULL"
        )
    op.drop_index("ix_notifications_content_id", table_name="notifications")
    seq = _sqlite_sequence()
    with op.batch_alter_table(
        "notifications", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint("ck_notifications_content", type_="check")
        batch.drop_column("content_id")
        for name, type_ in HEAVY:
            batch.alter_column(name, existing_type=type_, nullable=False)
    _restore_sqlite_sequence(seq)
    _queue_index_last()
    op.drop_table("contents")


def _sqlite_sequence() -> int | None:
    """The AUTOINCREMENT counter of ``notifications`` on SQLite (None elsewhere, or unset)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    found = bind.execute(sa.text(SEQUENCE)).scalar()
    return None if found is None else int(found)


def _restore_sqlite_sequence(seq: int | None) -> None:
    """Put the counter back where it was: the copied table would restart it at max(id)."""
    if seq is None:
        return
    bind = op.get_bind()
    params = {"seq": seq}
    if bind.execute(sa.text(SEQUENCE)).scalar() is None:
        op.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('notifications', :seq)"
            ).bindparams(**params)
        )
    else:
        op.execute(
            sa.text(
                "UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'notifications'"
            ).bindparams(**params)
        )


def _queue_index_last() -> None:
    """On SQLite, build the offline queue's partial index again, after the others.

    The batch copy recreates the indexes in no fixed order, and SQLite, knowing no row
    counts, picks the index created last among equals: the queue's queries (``user_id``
    and ``queued = 1``) would read ``ix_notifications_user_id_id`` and every row of the
    user instead of the queued ones only. The queued rows are few: this is cheap.
    """
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_notifications_queued", table_name="notifications")
    op.create_index(
        "ix_notifications_queued",
        "notifications",
        ["user_id", "id"],
        sqlite_where=sa.text("queued = 1"),
    )
