"""Group commit: background writes that arrive together go out in one transaction.

After an outage thousands of deployments change at once (a run seen completed, a verdict
queued, a callback delivered). One transaction each costs a commit each (on PostgreSQL a WAL
flush) and several round trips. Queued here, they share one: the version check of every
deployment in it is one locking read, each kind of statement one `executemany`. Each write
keeps its own check and its own answer, and hears it only once the commit is durable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ghapp.store.aio import AsyncConnection
from ghapp.store.schema import deployments

log = logging.getLogger("ghapp.store")
Statements = tuple[Any, list[dict[str, Any]]]
Begin = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
# Writes in one transaction at most: a commit should not keep its first writer waiting long.
MAX_BATCH = 200
# Transactions in flight at once: the next batch gathers while one commits.
PARALLEL = 4
# Ids in one IN list (SQLite builds may allow as few as 999 bound parameters).
CHUNK = 500


@dataclass
class Checked:
    """A deployment's UPDATE, applied only if its stored version is still `version`; then
    its `after` statements (the callback it queues...) too."""

    deployment_id: str
    version: int
    statement: Any
    params: dict[str, Any]
    after: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Pending:
    write: Checked | tuple[Any, dict[str, Any]]
    future: asyncio.Future[bool]


class GroupCommit:
    """Queues writes and runs them in shared transactions."""

    def __init__(self, begin: Begin) -> None:
        self._begin = begin
        self._queue: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def checked(self, write: Checked) -> bool:
        """Apply a versioned write; False if the deployment changed since (a lost race)."""
        return await self._submit(write)

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:
        """Run one statement (its WHERE does its own checking), committed with others."""
        await self._submit((statement, params))

    async def drain(self) -> None:
        """Wait for the queued writes (before the store closes)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _submit(self, write: Checked | tuple[Any, dict[str, Any]]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(write, future))
        if len(self._flushers) < PARALLEL:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        # The flush goes on if this writer is cancelled: the others wait for it too.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._commit(batch)
                batch = []
        except BaseException:
            # Cancelled (the loop is closing): no writer may wait for an answer forever.
            for pending in batch:
                if not pending.future.done():
                    pending.future.cancel()
            if not self._flushers - {asyncio.current_task()}:
                for pending in self._queue:
                    pending.future.cancel()
                self._queue = []
            raise

    async def _commit(self, batch: list[_Pending]) -> None:
        if len(batch) > 1:
            try:
                results = await self._transaction(batch)
            except Exception:
                log.warning("a shared write failed; its writes are tried alone", exc_info=True)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)
                return
        # Alone, or after a shared transaction failed: one write's error (a constraint, a
        # deadlock) must not fail the others, and each writer hears its own.
        for pending in batch:
            try:
                (result,) = await self._transaction([pending])
            except Exception as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            else:
                if not pending.future.done():
                    pending.future.set_result(result)

    async def _transaction(self, batch: list[_Pending]) -> list[bool]:
        checked = [p.write for p in batch if isinstance(p.write, Checked)]
        results: list[bool] = []
        # Every record's UPDATE, then what follows them (the outbox rows, restore times read
        # from the records), then the other statements: each kind one `executemany`.
        stages: tuple[dict[int, Statements], ...] = ({}, {}, {})

        def add(stage: int, statement: Any, params: dict[str, Any]) -> None:
            stages[stage].setdefault(id(statement), (statement, []))[1].append(params)

        async with self._begin() as conn:
            # SQLite: each UPDATE checks its own version (round trips cost no network there),
            # so the transaction's first statement is a write: a read first would have to
            # upgrade its lock later, which another process's write can refuse at once.
            one_by_one = conn.sync_connection.dialect.name == "sqlite"
            ids = sorted({w.deployment_id for w in checked})
            current = {} if one_by_one else await _versions(conn, ids)
            for pending in batch:
                write = pending.write
                if not isinstance(write, Checked):
                    add(2, *write)
                    results.append(True)
                    continue
                if one_by_one:
                    ok = (await conn.execute(write.statement, write.params)).rowcount == 1
                else:
                    ok = current.get(write.deployment_id) == write.version
                    if ok:
                        # A second write of the deployment in this batch expects the first's.
                        current[write.deployment_id] = write.version + 1
                        add(0, write.statement, write.params)
                if ok:
                    for statement, params in write.after:
                        add(1, statement, params)
                results.append(ok)
            for stage in stages:
                for statement, rows in stage.values():
                    await conn.execute(statement, rows)
        return results


def chunks(ids: list[str]) -> list[list[str]]:
    """`ids` in pieces small enough for one IN list."""
    return [ids[at : at + CHUNK] for at in range(0, len(ids), CHUNK)]


async def _versions(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    # Locked until the commit (PostgreSQL), in one order, so two batches never deadlock on
    # each other; SQLite's single writer needs no lock.
    found: dict[str, int] = {}
    for chunk in chunks(ids):
        query = (
            select(deployments.c.id, deployments.c.version)
            .where(deployments.c.id.in_(chunk))
            .order_by(deployments.c.id)
            .with_for_update()
        )
        found.update({row.id: int(row.version) for row in await conn.execute(query)})
    return found
