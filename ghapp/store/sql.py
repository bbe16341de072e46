"""The durable store on SQLAlchemy Core: SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from ghapp.core.deploys import DeploymentRecord
from ghapp.core.models import CallbackInfo
from ghapp.store import history, stats
from ghapp.store.aio import AsyncConnection, AsyncEngine, create_async_engine
from ghapp.store.batch import Checked, GroupCommit
from ghapp.store.inline import InlineReader, compiled, sqlite_file
from ghapp.store.migrate import upgrade
from ghapp.store.schema import (
    deployment_metadata,
    deployments,
    early_runs,
    outbox,
    seen_deliveries,
)

COMPLETED = "deployment.completed"
STARTED = "deployment.started"
HISTORY = 5


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class OutboxItem:
    """A claimed callback: which verdict goes where, and how many times it was tried."""

    delivery_id: str
    deployment_id: str
    url: str | None
    attempts: int
    created_at: float
    lease_until: float
    event: str = COMPLETED
    # The body queued with the callback (a `deployment.started`); None: render the record.
    body: str | None = None


def async_url(database_url: str) -> str:
    """The SQLAlchemy async URL for a DATABASE_URL of DESIGN.md's form."""
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url.removeprefix(prefix)
    raise ValueError(f"unsupported DATABASE_URL {database_url!r}")


# Any constant will do, as long as every replica takes the same one around migrating.
MIGRATION_LOCK = 0x6768617070  # "ghapp"
# How long a process starting on a new SQLite file waits for the others to let it in.
MIGRATION_WAIT = 60.0


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (0600), unless it exists.

    SQLite creates the database's -wal and -shm files with the database file's mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    except FileNotFoundError:
        # No such folder: SQLite's own error says so when it opens the file.
        return
    os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the poller read while a webhook writes; a crashed process loses no commit.
    # The busy timeout first: processes opening a new file together wait for each other.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_explicit_transactions(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    # The driver's own BEGIN would be a deferred one: `_begin_immediate` sends it instead.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Any) -> None:
    # The write lock from the start: a second process waits here (busy timeout) rather than
    # reading the old schema and then failing to write over the first one's migration.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlStore:
    """Deployments, seen deliveries and the callback outbox in one SQL database."""

    def __init__(self, database_url: str) -> None:
        self.url = async_url(database_url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            # No pre-ping: it costs a round trip per checkout; a dead connection is replaced
            # when it fails, and recycling bounds how stale one can get.
            kwargs = {"pool_size": 10, "max_overflow": 10, "pool_recycle": 1800}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # PostgreSQL reads need no transaction: autocommit saves a BEGIN and a ROLLBACK round
        # trip each. SQLite begins lazily anyway, and switching its isolation level per
        # checkout costs more thread hops than it saves.
        self.reader: AsyncEngine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # SQLite only: the webhook path's lookups, without aiosqlite's thread hops.
        self._inline: InlineReader | None = None
        # SQLite has one writer at a time, and a connection waiting for the write lock polls
        # in sleeps of up to 100 ms: queue this process's writers here instead.
        self._writes: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        # Background writes (polls, verdicts, callback outcomes) share commits.
        self._group = GroupCommit(self.begin)
        # Called with every deployment this process wrote, once committed (event streams).
        self.on_change: list[Callable[[DeploymentRecord], None]] = []

    def _changed(self, record: DeploymentRecord) -> None:
        for listener in self.on_change:
            listener(record)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (on SQLite, one at a time in this process)."""
        async with self._writes, self.engine.begin() as conn:
            yield conn

    async def open(self) -> None:
        """Bring the schema up to date (migrations run on every start).

        Replicas started together take turns: one migrates, the others wait for it and then
        find the schema at its head (PostgreSQL: an advisory lock; SQLite: its write lock)."""
        path = sqlite_file(self.url) if self.is_sqlite else None
        if path is not None:
            create_private_file(path)
            await self._migrate_sqlite()
        elif self.is_sqlite:
            # In memory: a database of this engine's own, which no other process can open.
            async with self.begin() as conn:
                await conn.run_sync(upgrade)
        else:
            async with self.engine.begin() as conn:
                # Held until this transaction ends, so until the migration is committed.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
                await conn.run_sync(upgrade)
        if path is not None and self._inline is None:
            self._inline = InlineReader(path)

    async def _migrate_sqlite(self) -> None:
        # A connection of its own, whose transaction begins IMMEDIATE; the store's others
        # keep the driver's usual (deferred) transactions the webhook path is tuned for.
        engine = create_async_engine(self.url, poolclass=NullPool)
        event.listen(engine.sync_engine, "connect", _sqlite_explicit_transactions)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        give_up = time.monotonic() + MIGRATION_WAIT
        try:
            for attempt in itertools.count(1):
                try:
                    async with self._writes, engine.begin() as conn:
                        await conn.run_sync(upgrade)
                    return
                except OperationalError as exc:
                    # A new file: turning it to WAL while another process holds a lock is
                    # refused at once ("database is locked"), without the busy timeout.
                    if "locked" not in str(exc) or time.monotonic() > give_up:
                        raise
                    await asyncio.sleep(min(0.05 * attempt, 1.0))
        finally:
            await engine.dispose()

    async def close(self) -> None:
        """Release the connections."""
        await self._group.drain()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await self.engine.dispose()

    def _read_inline(
        self, sql: str, params: tuple[Any, ...]
    ) -> tuple[bool, DeploymentRecord | None]:
        """(True, the record or None) when read inline; (False, None): use the usual path."""
        if self._inline is None:
            return False, None
        try:
            row = self._inline.first(sql, params)
        except sqlite3.Error:
            return False, None
        return True, _record(_RecordRow(*row)) if row is not None else None

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # --- deployments ----------------------------------------------------------------

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
        """The deployment watching a run, if any (an indexed lookup)."""
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
    ) -> list[DeploymentRecord]:
        """Deployments newest first, optionally of one repository or state, or by metadata."""
        if not storable(repository or "") or not storable(state or ""):
            return []
        query = _select_records()
        for key, value in (metadata or {}).items():
            query = query.where(
                deployments.c.id.in_(
                    select(deployment_metadata.c.deployment_id).where(
                        deployment_metadata.c.key == key, deployment_metadata.c.value == value
                    )
                )
            )
        if repository:
            query = query.where(deployments.c.repository == repository)
        if state:
            query = query.where(deployments.c.state == state)
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

    async def claim_for_poll(
        self,
        *,
        owner: str,
        silent_since: float,
        polled_before: float,
        lease_seconds: float,
        repositories: int,
    ) -> list[DeploymentRecord]:
        """Claim, for one poller, the unfinished deployments silent and unpolled since a time,
        every such deployment of up to `repositories` repositories (one listing answers for a
        repository's deployments together).

        The lease keeps other replicas off them while it is renewed (`renew_poll_claims`);
        `release_poll_claims` marks them polled, so a claim that dies with its replica leaves
        them due for whoever comes next.
        """
        now = time.time()
        claimable = and_(
            deployments.c.phase.in_(("dispatched", "in_progress")),
            deployments.c.last_heard_at < silent_since,
            or_(deployments.c.polled_at.is_(None), deployments.c.polled_at < polled_before),
            or_(deployments.c.lease_until.is_(None), deployments.c.lease_until < now),
        )
        until = now + lease_seconds
        async with self.begin() as conn:
            due = (
                await conn.execute(
                    select(deployments.c.repository)
                    .where(claimable)
                    .group_by(deployments.c.repository)
                    .order_by(func.min(deployments.c.last_heard_at))
                    .limit(repositories)
                )
            ).all()
            if not due:
                return []
            names = [row.repository for row in due]
            await conn.execute(
                update(deployments)
                .where(deployments.c.repository.in_(names), claimable)
                .values(lease_owner=owner, lease_until=until)
            )
            rows = (
                await conn.execute(
                    _select_records().where(
                        deployments.c.repository.in_(names),
                        deployments.c.lease_owner == owner,
                        deployments.c.lease_until == until,
                    )
                )
            ).all()
        return [_record(row) for row in rows]

    async def renew_poll_claims(self, ids: list[str], owner: str, lease_seconds: float) -> int:
        """Extend a live poller's leases (its heartbeat); how many it still holds."""
        held = 0
        async with self.begin() as conn:
            for chunk in _chunks(sorted(ids)):
                result = await conn.execute(
                    update(deployments)
                    .where(_locked_in_order(chunk, deployments.c.lease_owner == owner))
                    .values(lease_until=time.time() + lease_seconds)
                )
                held += int(result.rowcount)
        return held

    async def renew_gathers(self, ids: list[str], owner: str, lease_seconds: float) -> int:
        """Extend the gather leases a live worker holds (its heartbeat); how many it holds."""
        held = 0
        async with self.begin() as conn:
            for chunk in _chunks(sorted(ids)):
                result = await conn.execute(
                    update(deployments)
                    .where(_locked_in_order(chunk, deployments.c.gather_owner == owner))
                    .values(gather_until=time.time() + lease_seconds)
                )
                held += int(result.rowcount)
        return held

    async def stranded(self) -> list[DeploymentRecord]:
        """Deployments concluding with nobody holding their gather lease (a replica died)."""
        query = _select_records().where(
            deployments.c.phase == "concluding",
            or_(deployments.c.gather_until.is_(None), deployments.c.gather_until < time.time()),
        )
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def claim(self, deployment_id: str, *, owner: str, lease_seconds: float) -> bool:
        """Lease one deployment's slow work (gathering its verdict) for this worker."""
        now = time.time()
        async with self.begin() as conn:
            result = await conn.execute(
                update(deployments)
                .where(
                    deployments.c.id == deployment_id,
                    or_(
                        deployments.c.gather_until.is_(None),
                        deployments.c.gather_until < now,
                        deployments.c.gather_owner == owner,
                    ),
                )
                .values(gather_owner=owner, gather_until=now + lease_seconds)
            )
        return bool(result.rowcount)

    async def note_early_run(self, run_id: int, run: str) -> None:
        """Keep a run's latest webhook (JSON) for a deployment that may not be stored yet."""
        now = time.time()
        async with self.begin() as conn:
            updated = await conn.execute(
                update(early_runs).where(early_runs.c.run_id == run_id).values(
                    run=run, received_at=now
                )
            )
            if not updated.rowcount:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(early_runs).values(run_id=run_id, run=run, received_at=now)
                        )
                except IntegrityError:
                    pass  # another process noted it at the same moment: either copy will do
            if random.random() < 0.01:  # now and then is enough to keep the table small
                await conn.execute(
                    delete(early_runs).where(early_runs.c.received_at < now - 3600)
                )

    async def early_run(self, run_id: int) -> str | None:
        """The run's webhook noted before its deployment was stored, if any."""
        async with self.reader.connect() as conn:
            return (
                await conn.execute(select(early_runs.c.run).where(early_runs.c.run_id == run_id))
            ).scalar()

    async def release_claims(self, owner: str) -> None:
        """Give up every lease of a worker that stops, so others need not wait them out."""
        async with self.begin() as conn:
            await conn.execute(
                update(deployments)
                .where(deployments.c.gather_owner == owner)
                .values(gather_owner=None, gather_until=None)
            )
            await conn.execute(
                update(deployments)
                .where(deployments.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            await conn.execute(
                update(outbox)
                .where(outbox.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def release_poll_claims(
        self, ids: list[str], owner: str, *, polled: bool = True
    ) -> None:
        """End a poller's claim on deployments, marking them polled now when they were."""
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if polled:
            values["polled_at"] = time.time()
        async with self.begin() as conn:
            for chunk in _chunks(sorted(ids)):
                await conn.execute(
                    update(deployments)
                    .where(_locked_in_order(chunk, deployments.c.lease_owner == owner))
                    .values(**values)
                )

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
        gather_owner: str | None = None,
        gather_seconds: float = 0.0,
    ) -> bool:
        """Write a changed deployment if nobody else changed it since it was read.

        Returns False on a lost race (the caller reads again and re-applies its event).
        The delivery id, the record and the callback commit together or not at all; so does
        the lease on the deployment's slow work (`gather_owner`), which saves a write.
        """
        params = _save_params(record)
        if gather_owner is not None:
            params.update(v_gather_owner=gather_owner, v_gather_until=time.time() + gather_seconds)
        statement = _SAVE_LEASED if gather_owner else _SAVE
        after: list[tuple[Any, dict[str, Any]]] = []
        if enqueue_started:
            # Its own row and X-Ghapp-Delivery; the version check makes it one.
            after.append((_ENQUEUE, _outbox_row(record, STARTED, body=_started_body(record))))
        if enqueue_callback:
            after.append((_ENQUEUE, _outbox_row(record, COMPLETED)))
            if record.verdict is not None and record.verdict.status == "success":
                after.append((history.SET_RESTORE, {"id": record.id}))

        async def write(conn: AsyncConnection) -> bool:
            if delivery_id is not None:
                await conn.execute(
                    insert(seen_deliveries).values(delivery_id=delivery_id, received_at=time.time())
                )
            result = await conn.execute(statement, params)
            if result.rowcount != 1:
                return False
            for then, values in after:
                await conn.execute(then, values)
            return True

        try:
            if delivery_id is None:
                # No delivery id to undo on a lost race: the write may share a commit.
                saved = await self._group.checked(
                    Checked(record.id, record.version, statement, params, after)
                )
            else:
                async with self.begin() as conn:
                    saved = await write(conn)
                    if not saved:
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
            for start in range(0, len(ids), 500):
                query = select(deployments.c.id, deployments.c.version).where(
                    deployments.c.id.in_(ids[start : start + 500])
                )
                found.update({row.id: int(row.version) for row in await conn.execute(query)})
        return found

    async def delivery_seen(self, delivery_id: str) -> bool:
        """Whether a webhook delivery already changed a deployment."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(seen_deliveries.c.delivery_id).where(
                        seen_deliveries.c.delivery_id == delivery_id
                    )
                )
            ).first()
        return row is not None

    async def forget_deliveries(self, before: float) -> int:
        """Drop delivery ids older than a time (GitHub redelivers for days, not forever)."""
        async with self.begin() as conn:
            result = await conn.execute(
                delete(seen_deliveries).where(seen_deliveries.c.received_at < before)
            )
        return int(result.rowcount)

    # --- outbox -----------------------------------------------------------------------

    async def _enqueue(
        self, conn: AsyncConnection, record: DeploymentRecord, event: str, body: str | None = None
    ) -> None:
        await conn.execute(_ENQUEUE, _outbox_row(record, event, body))

    async def claim_callbacks(
        self, *, owner: str, lease_seconds: float, limit: int = 20
    ) -> list[OutboxItem]:
        """Lease the callbacks that are due, so no other worker sends them meanwhile."""
        now = time.time()
        until = now + lease_seconds
        claimable = and_(
            outbox.c.state == "pending",
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        )
        async with self.begin() as conn:
            due = (
                await conn.execute(
                    select(outbox.c.delivery_id)
                    .where(claimable)
                    .order_by(outbox.c.next_attempt_at)
                    .limit(limit)
                )
            ).all()
            if not due:
                return []
            ids = [row.delivery_id for row in due]
            # The WHERE is checked again under the row lock: of two claimers, one wins each row.
            await conn.execute(
                update(outbox)
                .where(outbox.c.delivery_id.in_(ids), claimable)
                .values(lease_owner=owner, lease_until=until)
            )
            rows = (
                await conn.execute(
                    select(outbox).where(
                        outbox.c.delivery_id.in_(ids),
                        outbox.c.lease_owner == owner,
                        outbox.c.lease_until == until,
                    )
                )
            ).all()
        return [
            OutboxItem(
                delivery_id=row.delivery_id,
                deployment_id=row.deployment_id,
                url=row.url,
                attempts=row.attempts,
                created_at=row.created_at,
                lease_until=until,
                event=row.event,
                body=row.body,
            )
            for row in rows
        ]

    async def renew_callback(self, item: OutboxItem, *, owner: str, lease_seconds: float) -> bool:
        """Extend the lease of a callback being sent (the heartbeat); False once it is lost."""
        async with self.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(
                    outbox.c.delivery_id == item.delivery_id,
                    outbox.c.lease_owner == owner,
                    outbox.c.state == "pending",
                )
                .values(lease_until=time.time() + lease_seconds)
            )
        return bool(result.rowcount)

    async def finish_callback(
        self,
        item: OutboxItem,
        *,
        owner: str,
        state: str,
        next_attempt_at: float | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record one attempt's outcome and release the lease."""
        now = time.time()
        params = {
            "f_id": item.delivery_id,
            "f_owner": owner,
            "v_state": state,
            "v_last_status": status,
            "v_last_error": error,
            # Unchanged when not given (a delivery, a callback given up).
            "v_next_attempt_at": next_attempt_at,
            "v_delivered_at": now if state == "delivered" else None,
        }
        # A callback delivered but not yet recorded is sent again only if this process dies
        # before the shared commit, as before when it was written alone.
        await self._group.execute(_FINISH, params)

    async def resend_callback(self, deployment_id: str) -> bool:
        """Queue a completed deployment's callback again (an operator's resend)."""
        now = time.time()
        async with self.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.deployment_id == deployment_id, outbox.c.event == COMPLETED)
                .values(
                    state="pending",
                    next_attempt_at=now,
                    created_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        return bool(result.rowcount)

    async def next_callback_due(self) -> float | None:
        """When the earliest pending callback is due, if any."""
        async with self.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.min(outbox.c.next_attempt_at)).where(outbox.c.state == "pending")
                )
            ).scalar()
        return float(value) if value is not None else None

    async def count_by_state(self) -> dict[str, int]:
        """How many deployments are in each public state."""
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(deployments.c.state, func.count()).group_by(deployments.c.state)
                )
            ).all()
        return {str(state): int(count) for state, count in rows}

    # --- releases, concurrency, statistics (ghapp.store.history, ghapp.store.stats) ---------

    async def releases(
        self, repository: str, environment: str, limit: int = 200
    ) -> list[DeploymentRecord]:
        """The successful deployments of a repository to an environment, newest first."""
        return await history.releases(self, repository, environment, limit)

    async def environments(self, repository: str) -> list[str]:
        """The environments a repository was deployed to, by name."""
        return await history.environments(self, repository)

    async def environment_pairs(self, limit: int = 50) -> list[tuple[str, str]]:
        """Every (repository, environment) deployed to."""
        return await history.environment_pairs(self, limit)

    async def daily(
        self,
        *,
        since: float,
        repository: str | None = None,
        environment: str | None = None,
    ) -> list[tuple[int, int, int, float | None]]:
        """Per UTC day: successes, counted failures, mean duration (for the page's charts)."""
        return await stats.daily(
            self, since=since, repository=repository, environment=environment
        )

    def environment_guard(
        self, repository: str, environment: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A transaction holding the environment's lock (see `history.environment_guard`)."""
        return history.environment_guard(self, repository, environment)

    async def unfinished_in(
        self, repository: str, environment: str, conn: AsyncConnection | None = None
    ) -> list[str]:
        """Ids of an environment's deployments without a verdict, oldest first."""
        if conn is not None:
            return await history.unfinished_in(conn, repository, environment)
        async with self.reader.connect() as own:
            return await history.unfinished_in(own, repository, environment)

    async def stats(
        self,
        *,
        since: float,
        days: int,
        repository: str | None = None,
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        """DESIGN.md's statistics per repository and environment, computed in SQL."""
        return await stats.deployment_stats(
            self, since=since, days=days, repository=repository, environment=environment
        )

    async def outbox_depth(self) -> int:
        """Callbacks not yet delivered nor given up."""
        async with self.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
                )
            ).scalar()
        return int(value or 0)


def select_records() -> Any:
    """The SELECT that reads whole records (add a WHERE), for the store's other modules."""
    return _RECORDS


def record_of(row: Row[Any]) -> DeploymentRecord:
    """A record from a row of `select_records()`."""
    return _record(row)


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    # SQLite builds may allow as few as 999 bound parameters in one statement.
    return [ids[at : at + size] for at in range(0, len(ids), size)]


def _locked_in_order(ids: list[str], *where: Any) -> Any:
    # Rows of many deployments are locked in id order, as the batched writes lock theirs
    # (`ghapp.store.batch`): two such writes wait for each other instead of deadlocking.
    return deployments.c.id.in_(
        select(deployments.c.id)
        .where(deployments.c.id.in_(ids), *where)
        .order_by(deployments.c.id)
        .with_for_update()
    )


def storable(value: str) -> bool:
    """Whether a text can be compared in SQL at all (PostgreSQL refuses NUL characters)."""
    return "\x00" not in value


def _callback_delivery_id(deployment_id: str, event: str = COMPLETED) -> str:
    # One callback per deployment and event, so its id names it on every retry.
    prefix = "cb_" if event == COMPLETED else "cbs_"
    return prefix + deployment_id.removeprefix("dep_")


def _started_body(record: DeploymentRecord) -> str:
    public = record.public()
    public.callback.state, public.callback.attempts = "pending", 0
    return public.model_dump_json()


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
_ENQUEUE = insert(outbox)
# `finish_callback`'s UPDATE, one statement for every outcome so a batch runs as one.
_FINISH = (
    update(outbox)
    .where(outbox.c.delivery_id == bindparam("f_id"), outbox.c.lease_owner == bindparam("f_owner"))
    .values(
        state=bindparam("v_state"),
        attempts=outbox.c.attempts + 1,
        lease_owner=None,
        lease_until=None,
        last_status=bindparam("v_last_status"),
        last_error=bindparam("v_last_error"),
        next_attempt_at=func.coalesce(bindparam("v_next_attempt_at"), outbox.c.next_attempt_at),
        delivered_at=func.coalesce(bindparam("v_delivered_at"), outbox.c.delivered_at),
    )
)


def _outbox_row(record: DeploymentRecord, event: str, body: str | None = None) -> dict[str, Any]:
    now = time.time()
    return {
        "delivery_id": _callback_delivery_id(record.id, event),
        "deployment_id": record.id,
        "event": event,
        "body": body,
        "url": record.callback.url,
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


class _RecordRow(NamedTuple):
    """A row of `_RECORDS` as the inline reader returns it (same columns, same order)."""

    doc: str
    version: int
    request_hash: str | None
    cb_state: str | None
    cb_attempts: int | None


def _select_records() -> Any:
    return _RECORDS


def _record(row: Row[Any] | _RecordRow) -> DeploymentRecord:
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
