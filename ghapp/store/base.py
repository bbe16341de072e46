"""The store's engine, connections and schema upgrades, shared by its parts (`SqlStore`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from sqlalchemy import event, exc, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from ghapp.core.deploys import DeploymentRecord
from ghapp.store.aio import AsyncConnection, AsyncEngine, create_async_engine
from ghapp.store.batch import GroupCommit
from ghapp.store.followed import FollowedRuns
from ghapp.store.inline import InlineReader, sqlite_file
from ghapp.store.migrate import upgrade
from ghapp.store.rows import _record, _RecordRow


def async_url(database_url: str) -> str:
    """The SQLAlchemy async URL for a DATABASE_URL (docs/reference/settings.md)."""
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url.removeprefix(prefix)
    raise ValueError(f"unsupported DATABASE_URL {database_url!r}")


class StoreUnavailable(Exception):
    """The database cannot be reached or written now (down, cut off, locked, too slow)."""

    @staticmethod
    def covers(error: BaseException) -> bool:
        """Whether an error means the database is unavailable (as opposed to a bug)."""
        if isinstance(
            error,
            StoreUnavailable
            | exc.OperationalError
            | exc.InterfaceError
            | exc.DisconnectionError
            | exc.TimeoutError
            | OSError
            | TimeoutError,
        ):
            return True
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return True
        # asyncpg's own errors, where SQLAlchemy did not wrap them (connecting, mostly).
        names = {cls.__name__ for cls in type(error).__mro__}
        return bool(names & {"PostgresConnectionError", "InterfaceError", "ConnectionError"})


# How long a connection attempt to PostgreSQL, and a wait for a pooled connection, may take:
# past it the database counts as unavailable (requests answer 503 within their 5 s).
CONNECT_TIMEOUT = 3.0
POOL_WAIT = 3.0
# SQLite: how long a write waits for another process's lock before the database counts as
# locked (a locked database is an outage: requests must answer within 5 s). Starting up, the
# migration waits longer, for replicas started together.
SQLITE_BUSY_MS = 1500
SQLITE_MIGRATION_BUSY_MS = 30000
# SQLite: how long a write waits for this process's earlier writes before giving up.
WRITE_QUEUE_WAIT = 3.0
# How long /readyz waits for the database.
READY_WAIT = 2.0

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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_ms: int = SQLITE_BUSY_MS) -> None:
    # WAL lets the poller read while a webhook writes; a crashed process loses no commit.
    # The busy timeout first: processes opening a new file together wait for each other.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_explicit_transactions(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record, SQLITE_MIGRATION_BUSY_MS)
    # The driver's own BEGIN would be a deferred one: `_begin_immediate` sends it instead.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Any) -> None:
    # The write lock from the start: a second process waits here (busy timeout) rather than
    # reading the old schema and then failing to write over the first one's migration.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# Parsed records kept for the inline reads (a few active deployments' worth).
PARSED_KEPT = 64


class StoreBase:
    """The engine, the write queue and the group commit every part of the store writes through."""

    def __init__(self, database_url: str) -> None:
        self.url = async_url(database_url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite:
            # Pre-ping: a connection that died while pooled (PostgreSQL restarted, the network
            # cut) is found and replaced before a request uses it, for one round trip per
            # checkout. Bounded waits: an unreachable database is an error within seconds,
            # never a request hanging.
            kwargs = {
                "pool_size": 10,
                "max_overflow": 10,
                "pool_recycle": 1800,
                "pool_pre_ping": True,
                "pool_timeout": POOL_WAIT,
                "connect_args": {"timeout": CONNECT_TIMEOUT},
            }
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
        # Records parsed from rows the inline reader returned lately, by the row itself (its
        # document and version): deliveries about one run come in bursts, and parsing the
        # document was most of the cost of a delivery about ghapp's own run (issue 23).
        self._parsed: LRUCache[tuple[Any, ...], DeploymentRecord] = LRUCache(PARSED_KEPT)
        # SQLite file only: the run ids deployments may follow (`by_run`'s filter).
        self._followed: FollowedRuns | None = None
        # SQLite has one writer at a time, and a connection waiting for the write lock polls
        # in sleeps of up to 100 ms: queue this process's writers here instead.
        self._writes = asyncio.Lock()
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
        async with self._write_turn(), self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        if not self.is_sqlite:
            yield
            return
        # Writers queue here while the file is locked: past WRITE_QUEUE_WAIT the database
        # counts as unavailable, rather than a request waiting behind every other writer.
        lock = self._writes
        try:
            async with asyncio.timeout(WRITE_QUEUE_WAIT):
                await lock.acquire()
        except TimeoutError:
            raise StoreUnavailable("the database is locked: writes are queued") from None
        try:
            yield
        finally:
            lock.release()

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
            self._followed = FollowedRuns(path, self._inline)

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
        if self._followed is not None:
            self._followed.close()
            self._followed = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await self.engine.dispose()

    def _note_run(self, record: DeploymentRecord) -> None:
        """Before a write of `record`: its run id is one a deployment may follow from now on."""
        if self._followed is not None and record.run is not None:
            self._followed.note(record.run.id)

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
        if row is None:
            return True, None
        parsed = self._parsed.get(row)
        if parsed is None:
            parsed = self._parsed[row] = _record(_RecordRow(*row))
        # A copy: callers set a record's own fields (its version on save). Nothing changes its
        # nested parts in place; the core copies a record deeply before it does.
        return True, parsed.model_copy()

    async def ping(self) -> None:
        """Raise if the database cannot be reached, or (SQLite) written, within READY_WAIT."""
        async with asyncio.timeout(READY_WAIT):
            if not self.is_sqlite:
                async with self.reader.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                return
            # A locked SQLite file still reads (WAL): ask for the write lock, and let it go.
            async with self.engine.connect() as conn:
                await conn.execute(text("BEGIN IMMEDIATE"))
                await conn.execute(text("ROLLBACK"))
