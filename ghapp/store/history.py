"""Release history, environments and restore times, in SQL."""

from __future__ import annotations

from sqlalchemy import select, text

from ghapp.core.deploys import DeploymentRecord
from ghapp.store.aio import AsyncConnection
from ghapp.store.base import StoreBase
from ghapp.store.rows import _record, _select_records, storable
from ghapp.store.schema import deployments

# How far back a release history is read to find what a rollback restores.
HISTORY_DEPTH = 200


class History(StoreBase):
    """Releases, the environments deployed to, and what is unfinished in each."""

    async def releases(
        self, repository: str, environment: str, limit: int = HISTORY_DEPTH
    ) -> list[DeploymentRecord]:
        """The successful deployments of a repository to an environment, newest first."""
        if not storable(repository) or not storable(environment):
            return []
        query = (
            _select_records()
            .where(
                deployments.c.repository == repository,
                deployments.c.environment == environment,
                deployments.c.verdict_status == "success",
            )
            .order_by(deployments.c.completed_at.desc(), deployments.c.id.desc())
            .limit(limit)
        )
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def environments(self, repository: str) -> list[str]:
        """The environments a repository was ever deployed to (or asked to be), by name."""
        if not storable(repository):
            return []
        query = (
            select(deployments.c.environment)
            .where(deployments.c.repository == repository, deployments.c.phase != "recorded")
            .group_by(deployments.c.environment)
            .order_by(deployments.c.environment)
        )
        async with self.reader.connect() as conn:
            return [str(row[0]) for row in (await conn.execute(query)).all()]

    async def unfinished_in(
        self, repository: str, environment: str, conn: AsyncConnection | None = None
    ) -> list[str]:
        """Ids of the deployments of an environment that have no verdict yet, oldest first
        (read on `conn`, a transaction the caller holds, when given)."""
        query = (
            select(deployments.c.id)
            .where(
                deployments.c.repository == repository,
                deployments.c.environment == environment,
                deployments.c.phase != "completed",
            )
            .order_by(deployments.c.created_at)
        )
        if conn is not None:
            return [str(row[0]) for row in (await conn.execute(query)).all()]
        async with self.reader.connect() as own:
            return [str(row[0]) for row in (await own.execute(query)).all()]


    async def environment_pairs(self, limit: int = 50) -> list[tuple[str, str]]:
        """Every (repository, environment) deployed to, by name (at most `limit`)."""
        query = (
            select(deployments.c.repository, deployments.c.environment)
            .where(deployments.c.phase != "recorded")
            .group_by(deployments.c.repository, deployments.c.environment)
            .order_by(deployments.c.repository, deployments.c.environment)
            .limit(limit)
        )
        async with self.reader.connect() as conn:
            return [(str(r[0]), str(r[1])) for r in (await conn.execute(query)).all()]


# Time to restore, kept on the success that ends a run of failures: its verdict minus the
# first failure's since the success before it (index range reads in ix_deployments_stats and
# ix_deployments_releases). Counted failures: not superseded, not dispatch_rejected.
_RESTORED_FROM = """
(SELECT MIN(f.completed_at) FROM deployments f
 WHERE f.repository = {t}.repository AND f.environment = {t}.environment
   AND f.verdict_status = 'failure'
   AND COALESCE(f.verdict_reason, '') NOT IN
     ('superseded', 'dispatch_rejected', 'policy_rejected', 'review_rejected')
   AND f.completed_at < {t}.completed_at
   AND f.completed_at > COALESCE(
     (SELECT MAX(s.completed_at) FROM deployments s
      WHERE s.repository = {t}.repository AND s.environment = {t}.environment
        AND s.verdict_status = 'success' AND s.completed_at < {t}.completed_at), -1))
"""
# Run after a success is written (`note_restore`; the store batches it with others).
SET_RESTORE = text(
    "UPDATE deployments SET restore_seconds = completed_at - "
    + _RESTORED_FROM.format(t="deployments")
    + " WHERE id = :id AND verdict_status = 'success' AND completed_at IS NOT NULL"
)
FILL_RESTORES = (
    "UPDATE deployments SET restore_seconds = completed_at - "
    + _RESTORED_FROM.format(t="deployments")
    + " WHERE verdict_status = 'success' AND completed_at IS NOT NULL"
)


async def note_restore(conn: AsyncConnection, deployment_id: str) -> None:
    """A success was written: record how long its environment had been failing, if it was."""
    await conn.execute(SET_RESTORE, {"id": deployment_id})
