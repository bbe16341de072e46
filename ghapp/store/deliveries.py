"""Webhook delivery bookkeeping in SQL: deliveries already applied, runs heard too early."""

from __future__ import annotations

import time

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ghapp.store.base import StoreBase
from ghapp.store.schema import early_runs, seen_deliveries


class Deliveries(StoreBase):
    """Delivery ids seen (GitHub redelivers) and run webhooks noted before their deployment
    (both pruned by ghapp.work.retention)."""

    async def delivery_seen(self, delivery_id: str) -> bool:
        """Whether a webhook delivery already changed a deployment."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(seen_deliveries.c.delivery_id).where(
                        seen_deliveries.c.delivery_id == delivery_id
                    )
                )
            ).first()
        return row is not None

    async def note_early_run(self, run_id: int, run: str) -> None:
        """Keep a run's latest webhook (JSON) for a deployment that may not be stored yet."""
        now = time.time()
        async with self.begin() as conn:
            updated = await conn.execute(
                update(early_runs).where(early_runs.c.run_id == run_id).values(
                    run=run, received_at=now
                )
            )
            if not updated.rowcount:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(early_runs).values(run_id=run_id, run=run, received_at=now)
                        )
                except IntegrityError:
                    pass  # another process noted it at the same moment: either copy will do

    async def early_run(self, run_id: int) -> str | None:
        """The run's webhook noted before its deployment was stored, if any."""
        async with self.reader.connect() as conn:
            return (
                await conn.execute(select(early_runs.c.run).where(early_runs.c.run_id == run_id))
            ).scalar()
