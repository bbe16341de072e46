"""Operator page sessions ended by signing out, kept until their cookie would have expired."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i12"
down_revision = "0004_i13"


def upgrade() -> None:
    op.create_table(
        "revoked_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revoked_sessions")
