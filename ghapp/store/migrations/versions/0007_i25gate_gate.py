"""The gate's decisions (deployment protection rule requests and ghapp's answers)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_i25gate"
down_revision = "0006_i15"


def upgrade() -> None:
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("repository", sa.String(200), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("run_attempt", sa.Integer, nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("answered_at", sa.Float, nullable=True),
        sa.Column("deployment_id", sa.String(64), nullable=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "run_id", "run_attempt", "environment", name="uq_gate_run_environment"
        ),
    )
    op.create_index("ix_gate_decisions_decided", "gate_decisions", ["decided_at"])
    op.create_index(
        "ix_gate_decisions_repository", "gate_decisions", ["repository", "decided_at"]
    )


def downgrade() -> None:
    op.drop_table("gate_decisions")
