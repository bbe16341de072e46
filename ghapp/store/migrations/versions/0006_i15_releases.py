"""Second round: releases, rollback and statistics.

Columns the release history and /stats select on (kind, the verdict's status and reason, the
duration, the time to restore; `completed_at` comes from 0004_i13 and is filled here for the
rows before it), their indexes, and the per-environment lock row of the concurrency rules.
Existing deployments are filled in from their stored document: `kind` "deploy", and their
successes become the release history."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

# A copy of ghapp.store.history.FILL_RESTORES as of this revision (migrations do not import
# code that later changes).
FILL_RESTORES = """
UPDATE deployments SET restore_seconds = completed_at - (
  SELECT MIN(f.completed_at) FROM deployments f
  WHERE f.repository = deployments.repository AND f.environment = deployments.environment
    AND f.verdict_status = 'failure'
    AND COALESCE(f.verdict_reason, '') NOT IN ('superseded', 'dispatch_rejected')
    AND f.completed_at < deployments.completed_at
    AND f.completed_at > COALESCE(
      (SELECT MAX(s.completed_at) FROM deployments s
       WHERE s.repository = deployments.repository AND s.environment = deployments.environment
         AND s.verdict_status = 'success' AND s.completed_at < deployments.completed_at), -1))
WHERE verdict_status = 'success' AND completed_at IS NOT NULL
"""

revision = "0006_i15"
down_revision = "0005_i12"
BATCH = 1000


def upgrade() -> None:
    op.add_column(
        "deployments",
        sa.Column("kind", sa.String(10), nullable=False, server_default="deploy"),
    )
    op.add_column("deployments", sa.Column("verdict_status", sa.String(10), nullable=True))
    op.add_column("deployments", sa.Column("verdict_reason", sa.String(30), nullable=True))
    op.add_column("deployments", sa.Column("duration_seconds", sa.Float, nullable=True))
    op.add_column("deployments", sa.Column("restore_seconds", sa.Float, nullable=True))
    op.create_table(
        "environment_locks",
        sa.Column("repository", sa.String(200), primary_key=True),
        sa.Column("environment", sa.String(100), primary_key=True),
        sa.Column("locked_at", sa.Float, nullable=False),
    )
    _fill_in()
    op.create_index(
        "ix_deployments_releases",
        "deployments",
        ["repository", "environment", "verdict_status", "completed_at"],
    )
    op.create_index(
        "ix_deployments_stats",
        "deployments",
        [
            "repository",
            "environment",
            "completed_at",
            "created_at",
            "verdict_status",
            "verdict_reason",
            "duration_seconds",
            "restore_seconds",
        ],
    )
    op.create_index(
        "ix_deployments_durations",
        "deployments",
        ["repository", "environment", "duration_seconds", "created_at"],
    )
    op.create_index(
        "ix_deployments_restores",
        "deployments",
        ["repository", "environment", "restore_seconds", "created_at"],
    )
    # With the indexes in place (and, on PostgreSQL, statistics that make the planner use
    # them): each success's time to restore, over the whole history.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("ANALYZE deployments"))
    bind.execute(sa.text(FILL_RESTORES))
    op.create_index(
        "ix_deployments_env_phase", "deployments", ["repository", "environment", "phase"]
    )


def _fill_in() -> None:
    bind = op.get_bind()
    last = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, doc FROM deployments WHERE id > :last AND verdict_status IS NULL "
                "AND state = 'completed' ORDER BY id LIMIT :n"
            ),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            break
        for deployment_id, doc in rows:
            record = json.loads(doc)
            verdict = record.get("verdict") or {}
            completed = record.get("completed_at")
            bind.execute(
                sa.text(
                    "UPDATE deployments SET verdict_status = :s, verdict_reason = :r, "
                    "completed_at = :c WHERE id = :i"
                ),
                {
                    "s": verdict.get("status"),
                    "r": verdict.get("reason"),
                    "c": _timestamp(completed),
                    "i": deployment_id,
                },
            )
        last = rows[-1][0]
    # Dispatch to verdict (created_at is the dispatch time), for those that had a run.
    bind.execute(
        sa.text(
            "UPDATE deployments SET duration_seconds = completed_at - created_at "
            "WHERE run_id IS NOT NULL AND completed_at IS NOT NULL"
        )
    )


def _timestamp(value: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp() if value else None


def downgrade() -> None:
    for name in (
        "ix_deployments_restores",
        "ix_deployments_env_phase",
        "ix_deployments_durations",
        "ix_deployments_stats",
        "ix_deployments_releases",
    ):
        op.drop_index(name, "deployments")
    op.drop_table("environment_locks")
    for column in (
        "restore_seconds",
        "duration_seconds",
        "verdict_reason",
        "verdict_status",
        "kind",
    ):
        op.drop_column("deployments", column)
