"""The inbox: seen, archived and expiring notifications, mutes that ignore them, and
each user's muted types.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable columns and a constant default: existing rows keep every value, and
    # neither database rewrites the table.
    with op.batch_alter_table("notifications", recreate="never") as batch:
        batch.add_column(sa.Column("seen_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("archived_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        batch.add_column(
            sa.Column("ignore_mutes", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # The expiry sweep: only rows that can expire, soonest first.
    op.create_index(
        "ix_notifications_expires_at",
        "notifications",
        ["expires_at"],
        sqlite_where=sa.text("expires_at IS NOT NULL"),
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_table(
        "muted_types",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("muted_types")
    op.drop_index("ix_notifications_expires_at", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("ignore_mutes")
        batch.drop_column("expires_at")
        batch.drop_column("archived_at")
        batch.drop_column("seen_at")
