"""The durable store on SQLAlchemy Core: SQLite by default, PostgreSQL for several replicas.

`SqlStore` is put together from one part per concept: the engine and schema upgrades
(`base`), deployments and their write-ahead dispatches, leases, the callback outbox and
webhook delivery bookkeeping; statements and row mapping live in `rows`.
"""

from __future__ import annotations

from typing import Any

from ghapp.core.deploys import DeploymentRecord
from ghapp.store import history, stats
from ghapp.store.aio import AsyncConnection
from ghapp.store.base import MIGRATION_LOCK as MIGRATION_LOCK
from ghapp.store.base import MIGRATION_WAIT as MIGRATION_WAIT
from ghapp.store.base import async_url as async_url
from ghapp.store.base import create_private_file as create_private_file
from ghapp.store.callbacks import Callbacks
from ghapp.store.callbacks import OutboxItem as OutboxItem
from ghapp.store.deliveries import Deliveries
from ghapp.store.deployments import HISTORY as HISTORY
from ghapp.store.deployments import IdempotencyConflict as IdempotencyConflict
from ghapp.store.dispatches import Dispatches
from ghapp.store.dispatches import EnvironmentBusy as EnvironmentBusy
from ghapp.store.leases import Leases
from ghapp.store.rows import COMPLETED as COMPLETED
from ghapp.store.rows import STARTED as STARTED
from ghapp.store.rows import _columns as _columns
from ghapp.store.rows import record_of as record_of
from ghapp.store.rows import select_records as select_records
from ghapp.store.rows import storable as storable


class SqlStore(Dispatches, Leases, Callbacks, Deliveries):
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
        """The statistics per repository and environment (docs/releases.md), computed in SQL."""
        return await stats.deployment_stats(
            self, since=since, days=days, repository=repository, environment=environment
        )
