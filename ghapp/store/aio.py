"""SQLAlchemy Core on asyncio drivers, without `sqlalchemy.ext.asyncio` (and so without the ORM).

Written by hand for weight: `sqlalchemy.ext.asyncio`'s package imports its AsyncSession, and
with it the whole ORM, which the store never uses: about 7 MiB of every `ghapp serve` process
(benchmarks/README.md, issue 17). Its AsyncEngine and AsyncConnection are thin proxies that run
the synchronous Core API in a greenlet (`greenlet_spawn`) over an engine created with
`_is_async=True` (the async dialect variants: aiosqlite, asyncpg); these classes do the same
for the few methods the store calls, with SQLAlchemy's own semantics (ext/asyncio/engine.py,
2.0-2.1): buffered results, commit or rollback when a `begin()` block ends, a connection
returned to the pool even when the task is cancelled meanwhile.

`_is_async` and `greenlet_spawn` are SQLAlchemy's internals: kept because the public
`sqlalchemy.ext.asyncio` still costs 6 to 7 MiB idle (measured again for issue 22, over the
64 MiB target), so SQLAlchemy is bounded below its next minor release in pyproject.toml and
tests/test_dependency_bounds.py fails when that bound moves unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, create_engine
from sqlalchemy.engine.base import Transaction
from sqlalchemy.util.concurrency import greenlet_spawn

T = TypeVar("T")

if TYPE_CHECKING:
    from sqlalchemy import CursorResult
    from sqlalchemy.util.typing import TupleAny, Unpack

    # What `execute` returns: rows of any number of columns of any type.
    Rows = CursorResult[Unpack[TupleAny]]


def create_async_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine on the URL's asyncio driver (`sqlite+aiosqlite://`, `postgresql+asyncpg://`)."""
    return AsyncEngine(create_engine(url, _is_async=True, **kwargs))


async def _run_to_completion(coro: Coroutine[Any, Any, None]) -> None:
    # Clean-up that must not be abandoned halfway (a connection half returned to its pool):
    # a cancellation that arrives meanwhile is raised once the clean-up is done.
    task = asyncio.ensure_future(coro)
    cancelled: BaseException | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled


class AsyncEngine:
    """An asyncio face on a SQLAlchemy `Engine` whose dialect is an asyncio one."""

    def __init__(self, sync_engine: Engine) -> None:
        if not sync_engine.dialect.is_async:
            raise ValueError(f"{sync_engine.dialect.driver!r} is not an asyncio driver")
        self.sync_engine = sync_engine

    def connect(self) -> AsyncConnection:
        """A connection from the pool, for `async with`."""
        return AsyncConnection(self.sync_engine)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction: committed when the block ends, rolled back on error."""
        async with self.connect() as conn, conn.begin():
            yield conn

    def execution_options(self, **options: Any) -> AsyncEngine:
        """A copy of this engine (sharing its pool) with these execution options."""
        return AsyncEngine(self.sync_engine.execution_options(**options))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await greenlet_spawn(self.sync_engine.dispose)


class AsyncConnection:
    """An asyncio face on a SQLAlchemy `Connection`; results come back fully buffered."""

    def __init__(self, sync_engine: Engine) -> None:
        self.sync_engine = sync_engine
        self._sync: Connection | None = None

    @property
    def sync_connection(self) -> Connection:
        """The synchronous connection (raises before `async with`)."""
        if self._sync is None:
            raise RuntimeError("connection not started: use `async with engine.connect()`")
        return self._sync

    async def __aenter__(self) -> AsyncConnection:
        self._sync = await greenlet_spawn(self.sync_engine.connect)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await _run_to_completion(self.close())

    def begin(self) -> AsyncTransaction:
        """A transaction, for `async with`."""
        return AsyncTransaction(self, nested=False)

    def begin_nested(self) -> AsyncTransaction:
        """A savepoint, for `async with`: an error inside rolls back only to it."""
        return AsyncTransaction(self, nested=True)

    async def execute(self, statement: Executable, parameters: Any = None) -> Rows:
        """Run a statement; its rows are read before this returns."""
        result: Rows = await greenlet_spawn(
            self.sync_connection.execute, statement, parameters, _require_await=True
        )
        # As ext.asyncio does (2.0.44+): the driver's cursor is closed now, in the event
        # loop; the buffered rows and the description stay readable.
        soft_close = getattr(result.cursor, "_async_soft_close", None)
        if soft_close is not None:
            await soft_close()
        return result

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(sync_connection, *args)`; its database calls are awaited in the event loop."""
        return await greenlet_spawn(fn, self.sync_connection, *args)

    async def commit(self) -> None:
        """Commit the current transaction."""
        await greenlet_spawn(self.sync_connection.commit)

    async def rollback(self) -> None:
        """Roll back the current transaction."""
        await greenlet_spawn(self.sync_connection.rollback)

    async def close(self) -> None:
        """Return the connection to the pool (rolling back a transaction left open)."""
        if self._sync is not None:
            await greenlet_spawn(self._sync.close)


class AsyncTransaction:
    """A transaction or savepoint of an `AsyncConnection`, used with `async with`."""

    def __init__(self, connection: AsyncConnection, *, nested: bool) -> None:
        self.connection = connection
        self.nested = nested
        self._sync: Transaction | None = None

    async def __aenter__(self) -> AsyncTransaction:
        conn = self.connection.sync_connection
        self._sync = await greenlet_spawn(conn.begin_nested if self.nested else conn.begin)
        self._sync.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._sync is not None
        # Commits, or rolls back when the block raised (or an inner rollback ended it).
        await greenlet_spawn(self._sync.__exit__, exc_type, exc, traceback)
