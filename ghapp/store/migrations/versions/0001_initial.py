"""Deployments, seen webhook deliveries and the callback outbox."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("repository", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_heard_at", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("polled_at", sa.Float, nullable=True),
        sa.Column("gather_owner", sa.String(64), nullable=True),
        sa.Column("gather_until", sa.Float, nullable=True),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_index("ix_deployments_run_id", "deployments", ["run_id"])
    op.create_index(
        "ix_deployments_repository_created", "deployments", ["repository", "created_at"]
    )
    op.create_index("ix_deployments_phase_heard", "deployments", ["phase", "last_heard_at"])
    op.create_index("ix_deployments_created", "deployments", ["created_at"])
    op.create_index("ix_deployments_correlation", "deployments", ["correlation_id"])
    op.create_table(
        "seen_deliveries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_seen_deliveries_received", "seen_deliveries", ["received_at"])
    op.create_table(
        "early_runs",
        sa.Column("run_id", sa.BigInteger, primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("run", sa.Text, nullable=False),
    )
    op.create_index("ix_early_runs_received", "early_runs", ["received_at"])
    op.create_table(
        "outbox",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("deployment_id", sa.String(64), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_outbox_state_next", "outbox", ["state", "next_attempt_at"])
