"""Live progress: one outbox row per (deployment, callback event), run-time history, and on
PostgreSQL a NOTIFY per deployment change (what event streams on other replicas listen to).

The outbox is rebuilt rather than altered: its first-round unique constraint on `deployment_id`
has no name SQLite could drop. Existing rows become `deployment.completed` callbacks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i13"
down_revision = "0003"

_OUTBOX_COLUMNS = (
    "delivery_id, deployment_id, url, state, attempts, created_at, next_attempt_at, "
    "lease_owner, lease_until, last_status, last_error, delivered_at"
)

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION ghapp_deployment_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('ghapp_deployments', NEW.id || ' ' || NEW.version);
  RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER ghapp_deployment_changed AFTER UPDATE ON deployments FOR EACH ROW
WHEN (OLD.version IS DISTINCT FROM NEW.version) EXECUTE FUNCTION ghapp_deployment_changed()
"""


def upgrade() -> None:
    op.add_column("deployments", sa.Column("workflow", sa.String(200), nullable=True))
    op.add_column("deployments", sa.Column("completed_at", sa.Float, nullable=True))
    op.add_column("deployments", sa.Column("run_seconds", sa.Float, nullable=True))
    op.create_index(
        "ix_deployments_history", "deployments", ["repository", "environment", "completed_at"]
    )
    op.create_table(
        "outbox_new",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(40), nullable=False, server_default="deployment.completed"),
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
        sa.Column("body", sa.Text, nullable=True),
        sa.UniqueConstraint("deployment_id", "event", name="uq_outbox_deployment_event"),
    )
    op.execute(
        f"INSERT INTO outbox_new ({_OUTBOX_COLUMNS}, event) "
        f"SELECT {_OUTBOX_COLUMNS}, 'deployment.completed' FROM outbox"
    )
    op.drop_table("outbox")
    op.rename_table("outbox_new", "outbox")
    op.create_index("ix_outbox_state_next", "outbox", ["state", "next_attempt_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ghapp_deployment_changed ON deployments")
        op.execute("DROP FUNCTION IF EXISTS ghapp_deployment_changed()")
    op.drop_index("ix_deployments_history", "deployments")
    op.drop_column("deployments", "run_seconds")
    op.drop_column("deployments", "completed_at")
    op.drop_column("deployments", "workflow")
