"""The durable store on SQLAlchemy Core: SQLite by default, PostgreSQL for several replicas.

`SqlStore` is put together from one part per concept: the engine and schema upgrades
(`base`), deployments, leases, the callback outbox and webhook delivery bookkeeping;
statements and row mapping live in `rows`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ghapp.core.deploys import DeploymentRecord
from ghapp.store import history, stats
from ghapp.store.aio import AsyncConnection
from ghapp.store.callbacks import Callbacks
from ghapp.store.deliveries import Deliveries
from ghapp.store.deployments import Deployments
from ghapp.store.leases import Leases


class SqlStore(Deployments, Leases, Callbacks, Deliveries):
    """Deployments, seen deliveries and the callback outbox in one SQL database."""

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
