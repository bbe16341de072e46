"""Leases on deployments in SQL: poll claims, gather leases, their renewals and releases."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from ghapp.core.deploys import DeploymentRecord
from ghapp.store.base import StoreBase
from ghapp.store.batch import chunks
from ghapp.store.rows import _record, _select_records
from ghapp.store.schema import deployments, outbox


class Leases(StoreBase):
    """Which replica polls a deployment, and which gathers its verdict, for how long."""

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
        return await self._update_held(
            ids, deployments.c.lease_owner == owner, lease_until=time.time() + lease_seconds
        )

    async def renew_gathers(self, ids: list[str], owner: str, lease_seconds: float) -> int:
        """Extend the gather leases a live worker holds (its heartbeat); how many it holds."""
        return await self._update_held(
            ids, deployments.c.gather_owner == owner, gather_until=time.time() + lease_seconds
        )

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
        await self._update_held(ids, deployments.c.lease_owner == owner, **values)

    async def _update_held(self, ids: list[str], held: Any, **values: Any) -> int:
        """Update the rows of `ids` that still match `held`, locked in id order; how many."""
        count = 0
        async with self.begin() as conn:
            for chunk in chunks(sorted(ids)):
                result = await conn.execute(
                    update(deployments).where(_locked_in_order(chunk, held)).values(**values)
                )
                count += int(result.rowcount)
        return count


def _locked_in_order(ids: list[str], *where: Any) -> Any:
    # Rows of many deployments are locked in id order, as the batched writes lock theirs
    # (`ghapp.store.batch`): two such writes wait for each other instead of deadlocking.
    return deployments.c.id.in_(
        select(deployments.c.id)
        .where(deployments.c.id.in_(ids), *where)
        .order_by(deployments.c.id)
        .with_for_update()
    )

