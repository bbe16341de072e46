"""Fan-out of deployment changes to this process's event streams.

A change reaches the hub from this process's own writes (`SqlStore.on_change`), from other
replicas through PostgreSQL's NOTIFY (a trigger sends one per new version; one LISTEN connection
per process), and on SQLite, where other `--workers` processes share the file, from a cheap poll
of the watched deployments' versions. Each change is read once per process, however many streams
watch the deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ghapp.core.deploys import DeploymentRecord
from ghapp.store import SqlStore

log = logging.getLogger("ghapp.hub")
CHANNEL = "ghapp_deployments"
# SQLite: how often other processes' writes are looked for (a change shows within this).
SQLITE_POLL = 0.4
RECONNECT_WAIT = 1.0
HEALTH_CHECK = 20.0


@dataclass
class _Watch:
    """The streams of one deployment and the latest version of it this process has read."""

    wakes: set[asyncio.Event] = field(default_factory=set)
    record: DeploymentRecord | None = None
    fetching: bool = False
    # A newer version than `record` was announced while a read was going on.
    again: bool = False

    @property
    def version(self) -> int:
        return self.record.version if self.record is not None else 0


class ChangeHub:
    """Wakes the streams of a deployment when a newer version of it exists."""

    def __init__(self, store: SqlStore, *, sqlite_poll: float = SQLITE_POLL) -> None:
        self.store = store
        self.sqlite_poll = sqlite_poll
        self.closed = False
        self._watches: dict[str, _Watch] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        store.on_change.append(self.offer)

    @property
    def streams(self) -> int:
        """How many streams are subscribed."""
        return sum(len(watch.wakes) for watch in self._watches.values())

    @contextlib.contextmanager
    def subscribe(self, deployment_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the deployment may have changed (or the hub closes)."""
        wake = asyncio.Event()
        watch = self._watches.setdefault(deployment_id, _Watch())
        watch.wakes.add(wake)
        self._ensure_listener()
        try:
            yield wake
        finally:
            watch.wakes.discard(wake)
            if not watch.wakes and self._watches.get(deployment_id) is watch:
                del self._watches[deployment_id]

    def latest(self, deployment_id: str) -> DeploymentRecord | None:
        """The newest version of a watched deployment this process has seen."""
        watch = self._watches.get(deployment_id)
        return watch.record if watch is not None else None

    def offer(self, record: DeploymentRecord) -> None:
        """A version of a deployment was read or written here: wake its streams if it is new."""
        watch = self._watches.get(record.id)
        if watch is None or record.version <= watch.version:
            return
        watch.record = record
        for wake in watch.wakes:
            wake.set()

    def announce(self, deployment_id: str, version: int) -> None:
        """Another process wrote this version: read it (once) if a stream here watches it."""
        watch = self._watches.get(deployment_id)
        if watch is None or version <= watch.version:
            return
        if watch.fetching:
            watch.again = True
            return
        watch.fetching = True
        self._spawn(self._fetch(deployment_id, watch))

    async def _fetch(self, deployment_id: str, watch: _Watch) -> None:
        try:
            while True:
                watch.again = False
                record = await self.store.get(deployment_id)
                if record is not None:
                    self.offer(record)
                if not watch.again:
                    return
        except Exception:
            log.warning("could not read a changed deployment", exc_info=True)
        finally:
            watch.fetching = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            listen = self._poll_sqlite if self.store.is_sqlite else self._listen_postgres
            self._listener = asyncio.create_task(listen())

    async def _poll_sqlite(self) -> None:
        self.listening.set()
        while self._watches and not self.closed:
            await asyncio.sleep(self.sqlite_poll)
            try:
                versions = await self.store.versions(list(self._watches))
            except Exception:
                log.warning("could not poll deployment versions", exc_info=True)
                continue
            for deployment_id, version in versions.items():
                self.announce(deployment_id, version)

    async def _listen_postgres(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        dsn = "postgresql://" + self.store.url.split("://", 1)[1]
        while not self.closed:
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn)
                await conn.add_listener(CHANNEL, self._notified)
                # Changes made while nobody listened are read now.
                for deployment_id in list(self._watches):
                    self.announce(deployment_id, self._watches[deployment_id].version + 1)
                self.listening.set()
                while not conn.is_closed():
                    await asyncio.sleep(HEALTH_CHECK)
                    # A connection that died silently raises here, and is replaced.
                    await conn.fetchval("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event stream listener lost its database connection", exc_info=True)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(RECONNECT_WAIT)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        deployment_id, _, version = payload.rpartition(" ")
        if version.isdigit():
            self.announce(deployment_id, int(version))

    def end_streams(self) -> None:
        """Tell every stream to end (the server is shutting down; clients reconnect elsewhere)."""
        self.closed = True
        for watch in self._watches.values():
            for wake in watch.wakes:
                wake.set()

    async def close(self) -> None:
        """End every stream and stop listening."""
        self.end_streams()
        tasks = [*self._tasks, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ValueError):
            self.store.on_change.remove(self.offer)
