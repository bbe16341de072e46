"""Third round, who may do what: scoped tokens (stored as digests) and the audit trail, whose
one-row head table serialises writers across replicas (a row lock; SQLite's write lock)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_i26"
down_revision = "0007_i25gate"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(10), nullable=False),
        sa.Column("repositories", sa.Text, nullable=False),
        sa.Column("environments", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("previous_digest", sa.String(64), nullable=True),
        sa.Column("previous_until", sa.Float, nullable=True),
    )
    op.create_index("ix_tokens_previous_digest", "tokens", ["previous_digest"])
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("client", sa.String(100), nullable=True),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_audit_created", "audit", ["created_at"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
    )
    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, last_id, last_hash, base_hash) "
            "VALUES (1, 0, :zeros, :zeros)"
        ).bindparams(zeros="0" * 64)
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_created", "audit")
    op.drop_table("audit")
    op.drop_index("ix_tokens_previous_digest", "tokens")
    op.drop_table("tokens")
