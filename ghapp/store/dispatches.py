"""Recording a dispatch before it is sent (write-ahead), under the environment's concurrency
rule, in one short transaction; dropping it when its request never left; finding the ones
whose process died before it recorded GitHub's answer.

The environment's rule is decided by the database, so it holds across replicas: the
environment's lock row is written first (PostgreSQL's row lock, SQLite's write lock), then its
unfinished deployments are read, then the new one is inserted, and the lock is released at
the commit, milliseconds later. No GitHub call is made inside; callers serialise their own
requests per environment in memory first, so a burst queues without holding connections."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from ghapp.core.deploys import DeploymentRecord, SendCallback, Transition
from ghapp.store.aio import AsyncConnection
from ghapp.store.callbacks import _ENQUEUE, _outbox_row
from ghapp.store.deployments import Deployments
from ghapp.store.rows import _SAVE, COMPLETED, _record, _save_params, _select_records
from ghapp.store.schema import deployment_metadata, deployments, environment_locks

Rule = Literal["queue", "reject", "cancel_previous"]
# Tries at saving a superseded deployment that a webhook changed meanwhile (SQLite holds the
# write lock, PostgreSQL the row locks: a second try is rare, a third rarer still).
SUPERSEDE_TRIES = 5


class EnvironmentBusy(Exception):
    """`reject`: the environment has an unfinished deployment (its id); nothing was recorded."""

    def __init__(self, deployment_id: str) -> None:
        super().__init__(deployment_id)
        self.deployment_id = deployment_id


class Dispatches(Deployments):
    """The write-ahead record of a dispatch and what becomes of it."""

    async def record_dispatch(
        self,
        record: DeploymentRecord,
        *,
        idempotency_key: str | None,
        request_hash: str | None,
        rule: Rule,
        supersede: Callable[[DeploymentRecord], Transition],
    ) -> list[Transition]:
        """Commit a `recorded` deployment before its dispatch is sent, applying the rule:
        `reject` raises EnvironmentBusy, `cancel_previous` supersedes the environment's
        unfinished deployments in the same commit (their transitions are returned, saved,
        callbacks queued). A clashing Idempotency-Key raises IntegrityError."""
        changed: list[Transition] = []
        async with self.begin() as conn:
            if rule != "queue":
                await _lock_environment(conn, record.repository, record.environment)
                unfinished = await _unfinished(conn, record.repository, record.environment)
                if rule == "reject" and unfinished:
                    raise EnvironmentBusy(unfinished[-1].id)
                if rule == "cancel_previous":
                    for previous in sorted(unfinished, key=lambda r: r.id):
                        transition = await _supersede(conn, previous, supersede)
                        if transition is not None:
                            changed.append(transition)
            await self.insert(
                conn, record, idempotency_key=idempotency_key, request_hash=request_hash
            )
        for transition in changed:
            transition.record.version += 1
            self._changed(transition.record)
        self._changed(record)
        return changed

    async def drop_recorded(self, deployment_id: str) -> bool:
        """Delete a deployment still `recorded` (its dispatch never left); False if it moved on."""
        async with self.begin() as conn:
            result = await conn.execute(
                delete(deployments).where(
                    deployments.c.id == deployment_id, deployments.c.phase == "recorded"
                )
            )
            if result.rowcount:
                await conn.execute(
                    delete(deployment_metadata).where(
                        deployment_metadata.c.deployment_id == deployment_id
                    )
                )
        return bool(result.rowcount)

    async def recorded_before(self, before: float, limit: int = 100) -> list[DeploymentRecord]:
        """Deployments `recorded` since before a time: their process did not follow up."""
        query = (
            _select_records()
            .where(deployments.c.phase == "recorded", deployments.c.last_heard_at < before)
            .order_by(deployments.c.last_heard_at)
            .limit(limit)
        )
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]


async def _lock_environment(conn: AsyncConnection, repository: str, environment: str) -> None:
    where = (
        environment_locks.c.repository == repository,
        environment_locks.c.environment == environment,
    )
    lock = update(environment_locks).where(*where)
    taken = await conn.execute(lock.values(locked_at=time.time()))
    if taken.rowcount:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(environment_locks).values(
                    repository=repository, environment=environment, locked_at=time.time()
                )
            )
    except IntegrityError:
        # Another request created the row first (and held it until its commit).
        await conn.execute(lock.values(locked_at=time.time()))


async def _unfinished(
    conn: AsyncConnection, repository: str, environment: str
) -> list[DeploymentRecord]:
    query = (
        _select_records()
        .where(
            deployments.c.repository == repository,
            deployments.c.environment == environment,
            deployments.c.phase != "completed",
        )
        .order_by(deployments.c.created_at, deployments.c.id)
    )
    return [_record(row) for row in (await conn.execute(query)).all()]


async def _supersede(
    conn: AsyncConnection,
    record: DeploymentRecord,
    supersede: Callable[[DeploymentRecord], Transition],
) -> Transition | None:
    for _ in range(SUPERSEDE_TRIES):
        transition = supersede(record)
        if not transition.changed:
            return None
        saved = (await conn.execute(_SAVE, _save_params(transition.record))).rowcount == 1
        if saved:
            if any(isinstance(action, SendCallback) for action in transition.actions):
                await conn.execute(_ENQUEUE, _outbox_row(transition.record, COMPLETED))
            return transition
        # A webhook changed it after it was read (PostgreSQL, between two statements).
        row = (await conn.execute(_select_records().where(deployments.c.id == record.id))).first()
        if row is None:
            return None
        record = _record(row)
    raise RuntimeError(f"deployment {record.id}: too many concurrent updates")
