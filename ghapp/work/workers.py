"""What the background workers share: their tasks, and the leases they hold in the store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from typing import Any

from ghapp.store import SqlStore


class Worker:
    """Owns background tasks and store leases under one name; closing ends both."""

    def __init__(self, store: SqlStore, kind: str) -> None:
        self.store = store
        # Leases in the database carry this name, so a replica releases only its own.
        self.owner = f"{kind}-{uuid.uuid4().hex[:12]}"
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a coroutine in the background until it ends or the worker closes."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel the tasks and release the leases; unfinished work stays in the store."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.release_claims(self.owner)


class Backoff:
    """Waits between tries of work that keeps failing (the database away): doubling from
    `first` up to `cap`, and back to `first` once it works."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        """One more failure: how long to wait before the next try."""
        self.failures += 1
        return min(self.cap, self.first * 2.0 ** (self.failures - 1))

    def ok(self) -> bool:
        """The work went through; True when it had been failing (worth a log line)."""
        recovered = self.failures > 0
        self.failures = 0
        return recovered
