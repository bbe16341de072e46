"""Tables of the durable state; the migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# A deployment is stored whole as JSON (`doc`); the columns beside it are what queries select on.
deployments = Table(
    "deployments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("phase", String(20), nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("request_hash", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_heard_at", Float, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    # When a poller last took it: spaces the polls of a quiet deployment.
    Column("polled_at", Float, nullable=True),
    # A separate lease for gathering a verdict, so a poll's lease never delays one.
    Column("gather_owner", String(64), nullable=True),
    Column("gather_until", Float, nullable=True),
    Column("environment", String(100), nullable=False, server_default="production"),
    Column("workflow", String(200), nullable=True),
    Column("completed_at", Float, nullable=True),
    # A successful run's duration (GitHub's start to completion): the progress estimates' history.
    Column("run_seconds", Float, nullable=True),
    # Second round (releases and statistics): what the release history and /stats select on,
    # beside the doc so that they are read from an index, never from the JSON.
    Column("kind", String(10), nullable=False, server_default="deploy"),
    Column("verdict_status", String(10), nullable=True),
    Column("verdict_reason", String(30), nullable=True),
    # Dispatch to verdict, for deployments that had a run (what /stats' percentiles rank).
    Column("duration_seconds", Float, nullable=True),
    # On a success that ended a run of failures: seconds since the run's first failure.
    Column("restore_seconds", Float, nullable=True),
    Column("doc", Text, nullable=False),
    Index("ix_deployments_run_id", "run_id"),
    Index("ix_deployments_repository_created", "repository", "created_at"),
    Index("ix_deployments_phase_heard", "phase", "last_heard_at"),
    Index("ix_deployments_created", "created_at"),
    Index("ix_deployments_correlation", "correlation_id"),
    Index("ix_deployments_history", "repository", "environment", "completed_at"),
    # The release history of an environment, newest first.
    Index(
        "ix_deployments_releases", "repository", "environment", "verdict_status", "completed_at"
    ),
    # Statistics: what /stats counts and walks, in the index itself (no table row is read),
    # in the order its per-environment walk needs.
    Index(
        "ix_deployments_stats",
        "repository",
        "environment",
        "completed_at",
        "created_at",
        "verdict_status",
        "verdict_reason",
        "duration_seconds",
        "restore_seconds",
    ),
    # Durations and restore times in rank order per environment: a percentile is an OFFSET.
    Index(
        "ix_deployments_durations", "repository", "environment", "duration_seconds", "created_at"
    ),
    Index(
        "ix_deployments_restores", "repository", "environment", "restore_seconds", "created_at"
    ),
    # Unfinished deployments of an environment (the concurrency rules).
    Index("ix_deployments_env_phase", "repository", "environment", "phase"),
)

# One row per repository and environment, locked while a `reject` or `cancel_previous`
# request checks for unfinished deployments and dispatches: the database serialises them
# across replicas (a row lock on PostgreSQL, the write lock on SQLite).
environment_locks = Table(
    "environment_locks",
    metadata,
    Column("repository", String(200), primary_key=True),
    Column("environment", String(100), primary_key=True),
    Column("locked_at", Float, nullable=False),
)

# The orchestrator's metadata of each deployment, one row a key: what `metadata.KEY=VALUE`
# filters look up by index (the same pairs are in `doc` for reading).
deployment_metadata = Table(
    "deployment_metadata",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("value", String(500), primary_key=True),
    Column("deployment_id", String(64), primary_key=True),
)

# Delivery ids of webhooks that changed a deployment: a constraint, so it holds across replicas.
seen_deliveries = Table(
    "seen_deliveries",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
    Index("ix_seen_deliveries_received", "received_at"),
)

# Runs whose webhook came before their deployment was stored (a fast run, a slow commit):
# kept a while so the deployment, once stored, still gets the news.
early_runs = Table(
    "early_runs",
    metadata,
    Column("run_id", BigInteger, primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("run", Text, nullable=False),
    Index("ix_early_runs_received", "received_at"),
)

# The callback outbox: one row per callback event of a deployment (its verdict, its start),
# written in the same transaction as the change it reports.
outbox = Table(
    "outbox",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("deployment_id", String(64), nullable=False),
    Column("event", String(40), nullable=False, server_default="deployment.completed"),
    Column("url", Text, nullable=True),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    # The body as it was when queued (a `deployment.started` shows the state it announces).
    Column("body", Text, nullable=True),
    UniqueConstraint("deployment_id", "event", name="uq_outbox_deployment_event"),
    Index("ix_outbox_state_next", "state", "next_attempt_at"),
)

# The local delivery log (`ghapp.work.delivery_log`): the last deliveries received, for debugging.
# Rows are written in batches by a background task, never on the webhook's own path.
delivery_log = Table(
    "delivery_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("delivery_id", String(100), nullable=True),
    Column("received_at", Float, nullable=False),
    Column("event", String(100), nullable=True),
    Column("action", String(100), nullable=True),
    Column("signature", String(16), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("body_size", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index("ix_delivery_log_received", "received_at"),
    Index("ix_delivery_log_delivery_id", "delivery_id"),
)

# Operator page sessions ended by signing out (their cookies still carry a valid signature until
# `expires_at`, when the row can go).
revoked_sessions = Table(
    "revoked_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
)

# Third round (docs/access.md): tokens with scopes, stored as SHA-256 digests only.
tokens = Table(
    "tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("prefix", String(10), nullable=False),
    Column("repositories", Text, nullable=False),
    Column("environments", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    # `tokens rotate`: the old value stays valid until `previous_until`.
    Column("previous_digest", String(64), nullable=True),
    Column("previous_until", Float, nullable=True),
    Index("ix_tokens_previous_digest", "previous_digest"),
)

# The audit trail: append-only, hash-chained rows (ghapp.core.audit).
audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(300), nullable=True),
    Column("outcome", String(40), nullable=False),
    Column("client", String(100), nullable=True),
    Column("request_id", String(100), nullable=True),
    Column("reason", Text, nullable=True),
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_audit_created", "created_at"),
)

# One row: the chain's newest id and hash (locked by every writer: one chain across
# replicas), and the hash the oldest kept row follows (zeros until the first pruning).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("base_hash", String(64), nullable=False),
)

# The gate's answers to GitHub's `deployment_protection_rule` requests: one row per run attempt
# and environment (the constraint makes two replicas answer one request once).
gate_decisions = Table(
    "gate_decisions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("repository", String(200), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("origin", String(10), nullable=False),
    Column("decision", String(10), nullable=False),
    Column("decided_at", Float, nullable=False),
    # When the answer reached GitHub (null: held, or not sent yet).
    Column("answered_at", Float, nullable=True),
    Column("deployment_id", String(64), nullable=True),
    Column("doc", Text, nullable=False),
    UniqueConstraint("run_id", "run_attempt", "environment", name="uq_gate_run_environment"),
    Index("ix_gate_decisions_decided", "decided_at"),
    Index("ix_gate_decisions_repository", "repository", "decided_at"),
)
