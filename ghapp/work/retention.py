"""Retention: operational rows are pruned by a background task, per table (docs/retention.md).

Deployments (with their idempotency keys, metadata and callback rows) are the release
history and are kept. Everything else that grows with traffic goes after a while:

| table              | what it holds                                 | kept                     |
|--------------------|-----------------------------------------------|--------------------------|
| seen_deliveries    | delivery ids that changed a deployment        | max(GitHub's redelivery  |
|                    |                                               |   window, DELIVERY_LOG_DAYS)|
| early_runs         | run webhooks that beat their deployment       | 1 hour                   |
| revoked_sessions   | signed-out operator sessions                  | until the cookie expires |
| delivery_log       | the local webhook log                         | DELIVERY_LOG_DAYS (its   |
|                    |                                               |   own task, row caps too)|
| audit              | the audit trail (hash-chained)                | AUDIT_DAYS               |

Each pass deletes in batches of PRUNE_BATCH rows, one short transaction each, so a backlog
never holds a lock for long; a database that is away only delays the next pass."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, delete, select

from ghapp.store import SqlStore
from ghapp.store.base import StoreUnavailable
from ghapp.store.schema import early_runs, revoked_sessions, seen_deliveries
from ghapp.work.delivery_log import DeliveryLog
from ghapp.work.workers import Backoff, Worker

log = logging.getLogger("ghapp.retention")
DAY = 86400.0
# GitHub lets a delivery be redelivered for 3 days; a day more for clocks and slow retries.
REDELIVERY_WINDOW_DAYS = 4.0
EARLY_RUN_KEEP = 3600.0
PRUNE_INTERVAL = 3600.0
# The first pass, a little after start-up (not in the way of reconciliation).
FIRST_PASS_AFTER = 60.0
PRUNE_BATCH = 5000


@dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `when` (epoch seconds) is older than `keep` seconds go."""

    table: Table
    key: Column[Any]
    when: Column[Any]
    keep: float


def rules(delivery_log_days: float) -> list[Rule]:
    """The retention of each table this module prunes."""
    seen_days = max(REDELIVERY_WINDOW_DAYS, delivery_log_days)
    return [
        Rule(seen_deliveries, seen_deliveries.c.delivery_id, seen_deliveries.c.received_at,
             seen_days * DAY),
        Rule(early_runs, early_runs.c.run_id, early_runs.c.received_at, EARLY_RUN_KEEP),
        # The row only needs to outlive the signed cookie it revokes.
        Rule(revoked_sessions, revoked_sessions.c.id, revoked_sessions.c.expires_at, 0.0),
    ]


class Retention(Worker):
    """Prunes every table that grows with traffic, once an hour."""

    def __init__(
        self,
        store: SqlStore,
        *,
        delivery_log_days: float,
        delivery_log: DeliveryLog | None = None,
        interval: float = PRUNE_INTERVAL,
        audit_days: float | None = None,
    ) -> None:
        super().__init__(store, "retention")
        self.rules = rules(delivery_log_days)
        # The audit trail is pruned apart: its chain's head moves with it (store.access).
        self.audit_days = audit_days
        self.delivery_log = delivery_log
        self.interval = interval

    async def run(self, first_after: float = FIRST_PASS_AFTER) -> None:
        """Prune now and then until cancelled; a failed pass is tried again sooner."""
        backoff = Backoff(first=5.0, cap=self.interval)
        wait = first_after
        while True:
            await asyncio.sleep(wait)
            try:
                removed = await self.prune()
            except Exception as exc:
                wait = backoff.failed()
                if not StoreUnavailable.covers(exc):
                    log.exception("pruning failed")
                continue
            backoff.ok()
            wait = self.interval
            if any(removed.values()):
                log.info("pruned old rows", extra={"removed": removed})

    async def prune(self, now: float | None = None) -> dict[str, int]:
        """One pass: rows removed per table."""
        now = time.time() if now is None else now
        removed: dict[str, int] = {}
        for rule in self.rules:
            removed[rule.table.name] = await self._prune(rule, now - rule.keep)
        if self.delivery_log is not None and self.delivery_log.enabled:
            removed["delivery_log"] = await self.delivery_log.purge(now)
        if self.audit_days is not None:
            removed["audit"] = await self.store.prune_audit(now - self.audit_days * DAY)
        return removed

    async def _prune(self, rule: Rule, before: float) -> int:
        total = 0
        while True:
            # By key, a batch at a time: no statement locks a whole backlog at once.
            batch = select(rule.key).where(rule.when < before).limit(PRUNE_BATCH)
            async with self.store.begin() as conn:
                result = await conn.execute(
                    delete(rule.table).where(rule.key.in_(batch.scalar_subquery()))
                )
            count = int(result.rowcount or 0)
            total += count
            if count < PRUNE_BATCH:
                return total
            await asyncio.sleep(0)  # let the requests in between
