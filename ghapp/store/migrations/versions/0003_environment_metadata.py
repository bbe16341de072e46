"""Second round: each deployment's environment as a column, and its metadata looked up by index.

Existing deployments get `environment` from their `inputs.environment`, else DEFAULT_ENVIRONMENT
(as set in the environment when the upgrade runs; `production` without it)."""

from __future__ import annotations

import json
import os

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "deployments",
        sa.Column("environment", sa.String(100), nullable=False, server_default="production"),
    )
    op.create_table(
        "deployment_metadata",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(500), primary_key=True),
        sa.Column("deployment_id", sa.String(64), primary_key=True),
    )
    default = os.environ.get("DEFAULT_ENVIRONMENT") or "production"
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, doc FROM deployments")).all()
    for deployment_id, doc in rows:
        record = json.loads(doc)
        named = (record.get("inputs") or {}).get("environment")
        environment = str(named) if named not in (None, "") else default
        record["environment"] = environment
        record.setdefault("metadata", {})
        bind.execute(
            sa.text("UPDATE deployments SET environment = :e, doc = :d WHERE id = :i"),
            {"e": environment[:100], "d": json.dumps(record), "i": deployment_id},
        )


def downgrade() -> None:
    op.drop_table("deployment_metadata")
    op.drop_column("deployments", "environment")
