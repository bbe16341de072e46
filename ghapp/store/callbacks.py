"""The callback outbox in SQL: claiming due callbacks, recording outcomes, resending."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update

from ghapp.core.deploys import DeploymentRecord
from ghapp.store.base import StoreBase
from ghapp.store.rows import COMPLETED
from ghapp.store.schema import outbox


@dataclass(frozen=True)
class OutboxItem:
    """A claimed callback: which verdict goes where, and how many times it was tried."""

    delivery_id: str
    deployment_id: str
    url: str | None
    attempts: int
    created_at: float
    lease_until: float
    event: str = COMPLETED
    # The body queued with the callback (a `deployment.started`); None: render the record.
    body: str | None = None


@dataclass(frozen=True)
class CallbackRecord:
    """One callback of a deployment as the outbox keeps it: where, how far, the last answer."""

    delivery_id: str
    event: str
    url: str | None
    state: str
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None


class Callbacks(StoreBase):
    """The outbox of callbacks: lease the due ones, record each attempt, queue one again."""

    async def claim_callbacks(
        self, *, owner: str, lease_seconds: float, limit: int = 20
    ) -> list[OutboxItem]:
        """Lease the callbacks that are due, so no other worker sends them meanwhile."""
        now = time.time()
        until = now + lease_seconds
        claimable = and_(
            outbox.c.state == "pending",
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
        )
        async with self.begin() as conn:
            due = (
                await conn.execute(
                    select(outbox.c.delivery_id)
                    .where(claimable)
                    .order_by(outbox.c.next_attempt_at)
                    .limit(limit)
                )
            ).all()
            if not due:
                return []
            ids = [row.delivery_id for row in due]
            # The WHERE is checked again under the row lock: of two claimers, one wins each row.
            await conn.execute(
                update(outbox)
                .where(outbox.c.delivery_id.in_(ids), claimable)
                .values(lease_owner=owner, lease_until=until)
            )
            rows = (
                await conn.execute(
                    select(outbox).where(
                        outbox.c.delivery_id.in_(ids),
                        outbox.c.lease_owner == owner,
                        outbox.c.lease_until == until,
                    )
                )
            ).all()
        return [
            OutboxItem(
                delivery_id=row.delivery_id,
                deployment_id=row.deployment_id,
                url=row.url,
                attempts=row.attempts,
                created_at=row.created_at,
                lease_until=until,
                event=row.event,
                body=row.body,
            )
            for row in rows
        ]

    async def renew_callback(self, item: OutboxItem, *, owner: str, lease_seconds: float) -> bool:
        """Extend the lease of a callback being sent (the heartbeat); False once it is lost."""
        async with self.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(
                    outbox.c.delivery_id == item.delivery_id,
                    outbox.c.lease_owner == owner,
                    outbox.c.state == "pending",
                )
                .values(lease_until=time.time() + lease_seconds)
            )
        return bool(result.rowcount)

    async def finish_callback(
        self,
        item: OutboxItem,
        *,
        owner: str,
        state: str,
        next_attempt_at: float | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """Record one attempt's outcome and release the lease."""
        now = time.time()
        params = {
            "f_id": item.delivery_id,
            "f_owner": owner,
            "v_state": state,
            "v_last_status": status,
            "v_last_error": error,
            # Unchanged when not given (a delivery, a callback given up).
            "v_next_attempt_at": next_attempt_at,
            "v_delivered_at": now if state == "delivered" else None,
        }
        # A callback delivered but not yet recorded is sent again only if this process dies
        # before the shared commit, as before when it was written alone.
        await self._group.execute(_FINISH, params)

    async def resend_callback(self, deployment_id: str) -> bool:
        """Queue a completed deployment's callback again (an operator's resend)."""
        now = time.time()
        async with self.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.deployment_id == deployment_id, outbox.c.event == COMPLETED)
                .values(
                    state="pending",
                    next_attempt_at=now,
                    created_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        return bool(result.rowcount)

    async def callbacks_of(self, deployment_id: str) -> list[CallbackRecord]:
        """A deployment's callbacks (its start's, its verdict's), oldest first."""
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox)
                    .where(outbox.c.deployment_id == deployment_id)
                    .order_by(outbox.c.created_at)
                )
            ).all()
        return [
            CallbackRecord(
                delivery_id=row.delivery_id,
                event=row.event,
                url=row.url,
                state=row.state,
                attempts=row.attempts,
                created_at=row.created_at,
                # Only a callback still pending has a next attempt.
                next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
                last_status=row.last_status,
                last_error=row.last_error,
                delivered_at=row.delivered_at,
            )
            for row in rows
        ]

    async def next_callback_due(self) -> float | None:
        """When the earliest pending callback is due, if any."""
        async with self.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.min(outbox.c.next_attempt_at)).where(outbox.c.state == "pending")
                )
            ).scalar()
        return float(value) if value is not None else None

    async def outbox_depth(self) -> int:
        """Callbacks not yet delivered nor given up."""
        async with self.reader.connect() as conn:
            value = (
                await conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
                )
            ).scalar()
        return int(value or 0)


def _callback_delivery_id(deployment_id: str, event: str = COMPLETED) -> str:
    # One callback per deployment and event, so its id names it on every retry.
    prefix = {COMPLETED: "cb_", "deployment.waiting": "cbw_"}.get(event, "cbs_")
    return prefix + deployment_id.removeprefix("dep_")


def _started_body(record: DeploymentRecord) -> str:
    public = record.public()
    public.callback.state, public.callback.attempts = "pending", 0
    return public.model_dump_json()


_ENQUEUE = insert(outbox)
# `finish_callback`'s UPDATE, one statement for every outcome so a batch runs as one.
_FINISH = (
    update(outbox)
    .where(outbox.c.delivery_id == bindparam("f_id"), outbox.c.lease_owner == bindparam("f_owner"))
    .values(
        state=bindparam("v_state"),
        attempts=outbox.c.attempts + 1,
        lease_owner=None,
        lease_until=None,
        last_status=bindparam("v_last_status"),
        last_error=bindparam("v_last_error"),
        next_attempt_at=func.coalesce(bindparam("v_next_attempt_at"), outbox.c.next_attempt_at),
        delivered_at=func.coalesce(bindparam("v_delivered_at"), outbox.c.delivered_at),
    )
)


def _outbox_row(record: DeploymentRecord, event: str, body: str | None = None) -> dict[str, Any]:
    now = time.time()
    return {
        "delivery_id": _callback_delivery_id(record.id, event),
        "deployment_id": record.id,
        "event": event,
        "body": body,
        "url": record.callback.url,
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }
