"""Every table that grows with traffic is pruned (docs/retention.md); deployments, the release
history, are kept. Real SQLite and PostgreSQL databases; the pass the background task runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select

from ghapp.core import deploys
from ghapp.core.models import DeploymentRequest
from ghapp.store import SqlStore
from ghapp.store.schema import (
    delivery_log,
    deployments,
    early_runs,
    outbox,
    revoked_sessions,
    seen_deliveries,
)
from ghapp.work.delivery_log import DeliveryLog
from ghapp.work.retention import DAY, EARLY_RUN_KEEP, REDELIVERY_WINDOW_DAYS, Retention

NOW = time.time()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(database_url)
    await store.open()
    yield store
    await store.close()


async def count(store: SqlStore, table: object) -> int:
    async with store.reader.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar() or 0)


def log_row(key: str, received_at: float) -> dict[str, object]:
    return {
        "id": key, "delivery_id": key, "received_at": received_at, "event": "workflow_run",
        "action": "completed", "signature": "ok", "outcome": "not_ours", "status": 200,
        "duration_ms": 1.0, "body_size": 2, "truncated": False, "headers": "{}", "body": b"{}",
    }


async def test_one_pass_prunes_what_is_past_its_retention_and_keeps_deployments(
    store: SqlStore,
) -> None:
    old_deployment = deploys.new_deployment(
        "dep_old", DeploymentRequest(repository="acme/shop"), ref="main",
        callback_url="http://orch.test/cb", installation_id=1, run_id=7, html_url=None,
        now=datetime.fromtimestamp(NOW - 400 * DAY, UTC),
    )
    await store.create(old_deployment, idempotency_key="k-old", request_hash="h",
                       enqueue_callback=True)
    seen_keep = REDELIVERY_WINDOW_DAYS * DAY
    async with store.begin() as conn:
        await conn.execute(insert(seen_deliveries), [
            {"delivery_id": f"old-{n}", "received_at": NOW - seen_keep - 60} for n in range(7)
        ] + [{"delivery_id": "fresh", "received_at": NOW - seen_keep + 60}])
        await conn.execute(insert(early_runs), [
            {"run_id": 1, "received_at": NOW - EARLY_RUN_KEEP - 1, "run": "{}"},
            {"run_id": 2, "received_at": NOW - 10, "run": "{}"},
        ])
        await conn.execute(insert(revoked_sessions), [
            {"id": "expired", "expires_at": NOW - 1},
            {"id": "live", "expires_at": NOW + 3600},
        ])
        await conn.execute(insert(delivery_log), [
            log_row("old", NOW - 4 * DAY), log_row("new", NOW - 60),
        ])
    log = DeliveryLog(store.engine, days=3, begin=store.begin)
    retention = Retention(store, delivery_log_days=3, delivery_log=log)
    removed = await retention.prune(now=NOW)
    assert removed == {
        "seen_deliveries": 7, "early_runs": 1, "revoked_sessions": 1, "delivery_log": 1,
    }
    assert await count(store, seen_deliveries) == 1
    assert await count(store, early_runs) == 1
    assert await count(store, revoked_sessions) == 1
    assert await count(store, delivery_log) == 1
    # The release history stays, with its key and callback row.
    assert await count(store, deployments) == 1 and await count(store, outbox) == 1
    found = await store.by_idempotency_key("k-old")
    assert found is not None and found[0].id == "dep_old"
    # A second pass finds nothing more.
    assert set((await retention.prune(now=NOW)).values()) == {0}


async def test_seen_delivery_ids_outlive_a_longer_delivery_log(store: SqlStore) -> None:
    # DELIVERY_LOG_DAYS longer than GitHub's redelivery window: ids are kept as long as the log.
    async with store.begin() as conn:
        await conn.execute(insert(seen_deliveries), [
            {"delivery_id": "ten-days", "received_at": NOW - 10 * DAY},
            {"delivery_id": "twenty-days", "received_at": NOW - 20 * DAY},
        ])
    removed = await Retention(store, delivery_log_days=14).prune(now=NOW)
    assert removed["seen_deliveries"] == 1
    assert await store.delivery_seen("ten-days")
    assert not await store.delivery_seen("twenty-days")


async def test_a_backlog_is_pruned_in_batches(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghapp.work import retention

    monkeypatch.setattr(retention, "PRUNE_BATCH", 100)
    async with store.begin() as conn:
        await conn.execute(insert(seen_deliveries), [
            {"delivery_id": f"d{n}", "received_at": NOW - 30 * DAY} for n in range(1050)
        ])
    removed = await Retention(store, delivery_log_days=3).prune(now=NOW)
    assert removed["seen_deliveries"] == 1050
    assert await count(store, seen_deliveries) == 0
