"""Deployments in SQL: creating, saving (the version check) and reading them."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from ghapp.core.deploys import DeploymentRecord
from ghapp.store import history
from ghapp.store.aio import AsyncConnection
from ghapp.store.base import StoreBase
from ghapp.store.batch import Checked, chunks
from ghapp.store.callbacks import _ENQUEUE, _outbox_row, _started_body
from ghapp.store.metadata_filter import with_metadata, within_globs
from ghapp.store.rows import (
    _BY_ID,
    _BY_ID_SQL,
    _BY_RUN,
    _BY_RUN_SQL,
    _SAVE,
    _SAVE_LEASED,
    COMPLETED,
    STARTED,
    WAITING,
    _columns,
    _record,
    _save_params,
    _select_records,
    storable,
)
from ghapp.store.schema import deployment_metadata, deployments, seen_deliveries

HISTORY = 5


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class Deployments(StoreBase):
    """Deployments: create, save if unchanged since read, look up and list."""

    async def create(
        self,
        record: DeploymentRecord,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        enqueue_callback: bool = False,
    ) -> DeploymentRecord:
        """Store a new deployment (and its callback when it is born completed)."""
        try:
            async with self.begin() as conn:
                await self.insert(
                    conn,
                    record,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    enqueue_callback=enqueue_callback,
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.by_idempotency_key(idempotency_key)
            if existing is None:
                raise
            if existing[1] != request_hash:
                raise IdempotencyConflict(idempotency_key) from None
            return existing[0]
        record.version = 1
        self._changed(record)
        return record

    async def insert(
        self,
        conn: AsyncConnection,
        record: DeploymentRecord,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        enqueue_callback: bool = False,
    ) -> None:
        """Insert a new deployment in a transaction the caller holds (see `create`)."""
        self._note_run(record)
        await conn.execute(
            insert(deployments).values(
                **_columns(record),
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                version=1,
            )
        )
        if record.metadata:
            await conn.execute(
                insert(deployment_metadata),
                [
                    {"key": k, "value": v, "deployment_id": record.id}
                    for k, v in record.metadata.items()
                ],
            )
        if enqueue_callback:
            await self._enqueue(conn, record, COMPLETED)
        if record.verdict is not None and record.verdict.status == "success":
            await history.note_restore(conn, record.id)
        record.version = 1

    async def by_idempotency_key(self, key: str) -> tuple[DeploymentRecord, str | None] | None:
        """The deployment an Idempotency-Key made, with the hash of its request body."""
        if not storable(key):
            return None
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(_select_records().where(deployments.c.idempotency_key == key))
            ).first()
        return (_record(row), row.request_hash) if row else None

    async def get(self, deployment_id: str) -> DeploymentRecord | None:
        """One deployment by id."""
        if not storable(deployment_id):
            return None
        answered, found = self._read_inline(_BY_ID_SQL, (deployment_id,))
        if answered:
            return found
        async with self.reader.connect() as conn:
            row = (await conn.execute(_BY_ID, {"id": deployment_id})).first()
        return _record(row) if row else None

    async def by_run(self, run_id: int) -> DeploymentRecord | None:
        """The deployment watching a run, if any (an indexed lookup, unless none may)."""
        if self._followed is not None and not self._followed.may_follow(run_id):
            return None
        answered, found = self._read_inline(_BY_RUN_SQL, (run_id,))
        if answered:
            return found
        async with self.reader.connect() as conn:
            row = (await conn.execute(_BY_RUN, {"run_id": run_id})).first()
        return _record(row) if row else None

    async def recent(
        self,
        *,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 50,
        metadata: dict[str, str] | None = None,
        visible: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
    ) -> list[DeploymentRecord]:
        """Deployments newest first, optionally of one repository or state, or by metadata;
        `visible`: only those a token's repository and environment globs match."""
        if not storable(repository or "") or not storable(state or ""):
            return []
        query = with_metadata(_select_records(), metadata)
        # A dispatch not yet sent is shown to its own request only (it may yet be dropped).
        query = query.where(deployments.c.phase != "recorded")
        if repository:
            query = query.where(deployments.c.repository == repository)
        if state:
            query = query.where(deployments.c.state == state)
        if visible is not None:
            query = query.where(
                within_globs(deployments.c.repository, visible[0]),
                within_globs(deployments.c.environment, visible[1]),
            )
        query = query.order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_record(row) for row in rows]

    async def unfinished(
        self, *, heard_before: float | None = None, phase: str | None = None
    ) -> list[DeploymentRecord]:
        """Deployments without a verdict (optionally in one phase, or silent since a time)."""
        query = _select_records().where(deployments.c.phase != "completed")
        if phase is not None:
            query = query.where(deployments.c.phase == phase)
        if heard_before is not None:
            query = query.where(deployments.c.last_heard_at < heard_before)
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query.order_by(deployments.c.last_heard_at))).all()
        return [_record(row) for row in rows]

    async def unbound(self, repository: str) -> list[DeploymentRecord]:
        """Unfinished deployments of a repository whose run is not identified yet."""
        query = _select_records().where(
            deployments.c.repository == repository,
            deployments.c.run_id.is_(None),
            deployments.c.phase != "completed",
        )
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query.order_by(deployments.c.created_at))).all()
        return [_record(row) for row in rows]

    async def past_deadline(
        self, *, unbound_before: float, running_before: float, concluding_before: float
    ) -> list[DeploymentRecord]:
        """Unfinished deployments whose run was never found in time, runs for too long, or
        whose verdict has been gathered (`concluding`) since before a time."""
        waiting = and_(
            deployments.c.phase.in_(("dispatched", "in_progress")),
            or_(
                and_(deployments.c.run_id.is_(None), deployments.c.created_at < unbound_before),
                deployments.c.created_at < running_before,
            ),
        )
        # `updated_at` is never before the run was seen completed: a conservative filter,
        # the state machine decides from the exact time.
        concluding = and_(
            deployments.c.phase == "concluding", deployments.c.updated_at < concluding_before
        )
        query = _select_records().where(or_(waiting, concluding))
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def save(
        self,
        record: DeploymentRecord,
        *,
        delivery_id: str | None = None,
        enqueue_callback: bool = False,
        enqueue_started: bool = False,
        enqueue_waiting: bool = False,
        gather_owner: str | None = None,
        gather_seconds: float = 0.0,
    ) -> bool:
        """Write a changed deployment if nobody else changed it since it was read.

        Returns False on a lost race (the caller reads again and re-applies its event).
        The delivery id, the record and the callback commit together or not at all; so does
        the lease on the deployment's slow work (`gather_owner`), which saves a write.
        """
        self._note_run(record)
        params = _save_params(record)
        if gather_owner is not None:
            params.update(v_gather_owner=gather_owner, v_gather_until=time.time() + gather_seconds)
        statement = _SAVE_LEASED if gather_owner else _SAVE
        after: list[tuple[Any, dict[str, Any]]] = []
        if enqueue_started:
            # Its own row and X-Ghapp-Delivery; the version check makes it one.
            after.append((_ENQUEUE, _outbox_row(record, STARTED, body=_started_body(record))))
        if enqueue_waiting:
            after.append((_ENQUEUE, _outbox_row(record, WAITING, body=_started_body(record))))
        if enqueue_callback:
            after.append((_ENQUEUE, _outbox_row(record, COMPLETED)))
            if record.verdict is not None and record.verdict.status == "success":
                after.append((history.SET_RESTORE, {"id": record.id}))
        try:
            if delivery_id is None:
                # No delivery id to undo on a lost race: the write may share a commit.
                saved = await self._group.checked(
                    Checked(record.id, record.version, statement, params, after)
                )
            else:
                async with self.begin() as conn:
                    await conn.execute(
                        insert(seen_deliveries).values(
                            delivery_id=delivery_id, received_at=time.time()
                        )
                    )
                    saved = (await conn.execute(statement, params)).rowcount == 1
                    if saved:
                        for then, values in after:
                            await conn.execute(then, values)
                    else:
                        # Lost the race: the delivery id goes too, recorded by the retry.
                        await conn.rollback()
        except IntegrityError:
            # The delivery id was recorded by someone else first: that one did the work.
            return False
        if not saved:
            return False
        record.version += 1
        self._changed(record)
        return True

    async def recent_run_seconds(
        self, repository: str, workflow: str, environment: str, limit: int = HISTORY
    ) -> list[float]:
        """Run times of the last successful deployments of a repository, workflow, environment."""
        if not storable(repository + workflow + environment):
            return []
        query = (
            select(deployments.c.run_seconds)
            .where(
                deployments.c.repository == repository,
                deployments.c.environment == environment,
                deployments.c.workflow == workflow,
                deployments.c.run_seconds.is_not(None),
            )
            .order_by(deployments.c.completed_at.desc())
            .limit(limit)
        )
        async with self.reader.connect() as conn:
            return [float(value) for value in (await conn.execute(query)).scalars()]

    async def versions(self, ids: list[str]) -> dict[str, int]:
        """The stored version of each of these deployments (a cheap check for changes)."""
        found: dict[str, int] = {}
        async with self.reader.connect() as conn:
            for chunk in chunks(ids):
                query = select(deployments.c.id, deployments.c.version).where(
                    deployments.c.id.in_(chunk)
                )
                found.update({row.id: int(row.version) for row in await conn.execute(query)})
        return found

    async def _enqueue(
        self, conn: AsyncConnection, record: DeploymentRecord, event: str, body: str | None = None
    ) -> None:
        await conn.execute(_ENQUEUE, _outbox_row(record, event, body))

    async def count_by_state(self) -> dict[str, int]:
        """How many deployments are in each public state."""
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(deployments.c.state, func.count())
                    .where(deployments.c.phase != "recorded")
                    .group_by(deployments.c.state)
                )
            ).all()
        return {str(state): int(count) for state, count in rows}
