"""messages as ids, run progress

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # messages kept as ids with parameters, translated when shown; the text columns stay for
    # `status` and for rows written before
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_msg", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("texts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("texts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("progress")
        batch_op.drop_column("message_msg")
