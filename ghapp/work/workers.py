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
