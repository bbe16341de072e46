"""The local delivery log: the last webhook deliveries received, with headers and body."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "delivery_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("delivery_id", sa.String(100), nullable=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("event", sa.String(100), nullable=True),
        sa.Column("action", sa.String(100), nullable=True),
        sa.Column("signature", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("body_size", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_delivery_log_received", "delivery_log", ["received_at"])
    op.create_index("ix_delivery_log_delivery_id", "delivery_log", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_log_delivery_id", "delivery_log")
    op.drop_index("ix_delivery_log_received", "delivery_log")
    op.drop_table("delivery_log")
