"""offline rows, queue and tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 14:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offline_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=36), nullable=False),
        sa.Column("entity_set", sa.String(length=100), nullable=False),
        sa.Column("row_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=True),
        sa.Column("etag", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offline_rows"),
        sa.UniqueConstraint("org", "entity_set", "row_id", name="uq_offline_rows"),
    )
    op.create_index("ix_offline_rows_title", "offline_rows", ["org", "entity_set", "title"])
    op.create_index("ix_offline_rows_updated", "offline_rows", ["org", "entity_set", "updated_at"])
    op.create_table(
        "offline_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org", sa.String(length=36), nullable=False),
        sa.Column("op", sa.String(length=10), nullable=False),
        sa.Column("entity_set", sa.String(length=100), nullable=False),
        sa.Column("row_id", sa.String(length=36), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("base_etag", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offline_queue"),
    )
    op.create_index("ix_offline_queue_status", "offline_queue", ["org", "status", "id"])
    op.create_table(
        "offline_tables",
        sa.Column("org", sa.String(length=36), nullable=False),
        sa.Column("entity_set", sa.String(length=100), nullable=False),
        sa.Column("logical_name", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("title_column", sa.String(length=100), nullable=True),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("row_filter", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org", "entity_set", name="pk_offline_tables"),
    )


def downgrade() -> None:
    op.drop_table("offline_tables")
    op.drop_index("ix_offline_queue_status", table_name="offline_queue")
    op.drop_table("offline_queue")
    op.drop_index("ix_offline_rows_updated", table_name="offline_rows")
    op.drop_index("ix_offline_rows_title", table_name="offline_rows")
    op.drop_table("offline_rows")
