"""The store's prebuilt statements and the mapping between records and rows."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Row, and_, bindparam, literal_column, select, update

from ghapp.core.deploys import DeploymentRecord
from ghapp.core.models import CallbackInfo
from ghapp.store.inline import compiled
from ghapp.store.schema import deployments, outbox

COMPLETED = "deployment.completed"
STARTED = "deployment.started"
WAITING = "deployment.waiting"


def storable(value: str) -> bool:
    """Whether a text can be compared in SQL at all (PostgreSQL refuses NUL characters)."""
    return "\x00" not in value


# Built once: each query adds its WHERE to this (SQLAlchemy caches the compiled form).
_RECORDS = select(
    deployments.c.doc,
    deployments.c.version,
    deployments.c.request_hash,
    outbox.c.state.label("cb_state"),
    outbox.c.attempts.label("cb_attempts"),
).select_from(
    deployments.outerjoin(
        outbox,
        and_(
            outbox.c.deployment_id == deployments.c.id,
            # A literal, not a parameter: the inline reader passes only the WHERE's parameters.
            outbox.c.event == literal_column(f"'{COMPLETED}'"),
        ),
    )
)


_BY_ID: Any = _RECORDS.where(deployments.c.id == bindparam("id"))
_BY_RUN: Any = _RECORDS.where(deployments.c.run_id == bindparam("run_id"))
_BY_ID_SQL = compiled(_BY_ID)
_BY_RUN_SQL = compiled(_BY_RUN)


class _RecordRow(NamedTuple):
    """A row of `_RECORDS` as the inline reader returns it (same columns, same order)."""

    doc: str
    version: int
    request_hash: str | None
    cb_state: str | None
    cb_attempts: int | None


def _select_records() -> Any:
    """The SELECT that reads whole records (add a WHERE), for the store's other modules."""
    return _RECORDS


def _record(row: Row[Any] | _RecordRow) -> DeploymentRecord:
    """A record from a row of `_select_records()` (or the inline reader's same columns)."""
    record = DeploymentRecord.model_validate_json(row.doc)
    record.version = row.version
    if row.cb_state is not None:
        record.callback = CallbackInfo(
            url=record.callback.url, state=row.cb_state, attempts=row.cb_attempts
        )
    return record


def _columns(record: DeploymentRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "repository": record.repository,
        "state": record.state,
        "phase": record.phase,
        "run_id": record.run.id if record.run else None,
        "correlation_id": record.correlation_id,
        "created_at": record.created_at.timestamp(),
        "updated_at": record.updated_at.timestamp(),
        "last_heard_at": record.last_heard_at.timestamp(),
        "environment": record.environment,
        "workflow": record.workflow,
        "completed_at": record.completed_at.timestamp() if record.completed_at else None,
        "run_seconds": record.run_seconds(),
        "kind": record.kind,
        "verdict_status": record.verdict.status if record.verdict else None,
        "verdict_reason": record.verdict.reason if record.verdict else None,
        "duration_seconds": (
            (record.completed_at - record.created_at).total_seconds()
            if record.completed_at is not None and record.run is not None
            else None
        ),
        "doc": record.model_dump_json(exclude={"version"}),
    }


# `save`'s UPDATE, built once (building it per write, with its twenty values, cost more CPU
# than running it): the version check, every column, and optionally the gather lease.
_SAVED_COLUMNS = (
    "repository", "state", "phase", "run_id", "correlation_id", "created_at", "updated_at",
    "last_heard_at",
    "environment", "workflow", "completed_at", "run_seconds", "kind", "verdict_status",
    "verdict_reason", "duration_seconds", "doc",
)  # fmt: skip
_SAVE = (
    update(deployments)
    .where(deployments.c.id == bindparam("w_id"), deployments.c.version == bindparam("w_version"))
    .values(
        {name: bindparam(f"v_{name}") for name in _SAVED_COLUMNS}
        | {"version": bindparam("v_version")}
    )
)
_SAVE_LEASED = _SAVE.values(
    gather_owner=bindparam("v_gather_owner"), gather_until=bindparam("v_gather_until")
)


def _save_params(record: DeploymentRecord) -> dict[str, Any]:
    columns = _columns(record)
    params = {f"v_{name}": columns[name] for name in _SAVED_COLUMNS}
    params.update(w_id=record.id, w_version=record.version, v_version=record.version + 1)
    return params
