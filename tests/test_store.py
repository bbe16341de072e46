"""The SQL store on a real database file (and PostgreSQL where configured)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ghapp.core import deploys
from ghapp.core.deploys import DeploymentRecord, RunObserved
from ghapp.core.models import DeploymentRequest
from ghapp.store import IdempotencyConflict, SqlStore

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(database_url)
    await store.open()
    yield store
    await store.close()


def record(n: int, *, run_id: int | None = None, repo: str = "acme/shop") -> DeploymentRecord:
    return deploys.new_deployment(
        f"dep_{n}",
        DeploymentRequest(repository=repo),
        ref="main",
        callback_url="http://orch.test/cb",
        installation_id=1,
        run_id=run_id,
        html_url=None,
        now=NOW.replace(minute=n % 60),
    )


async def test_migrations_are_repeatable(database_url: str) -> None:
    for _ in range(2):
        store = SqlStore(database_url)
        await store.open()
        await store.ping()
        await store.close()


async def test_deployment_survives_reopening(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.open()
    await store.create(record(1, run_id=11))
    await store.close()
    reopened = SqlStore(database_url)
    await reopened.open()
    found = await reopened.by_run(11)
    await reopened.close()
    assert found is not None and found.id == "dep_1" and found.version == 1


async def test_idempotency_key(store: SqlStore) -> None:
    first = await store.create(record(1), idempotency_key="k1", request_hash="h")
    again = await store.create(record(2), idempotency_key="k1", request_hash="h")
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.create(record(3), idempotency_key="k1", request_hash="other")
    assert [r.id for r in await store.recent()] == ["dep_1"]


async def test_save_detects_a_lost_race(store: SqlStore) -> None:
    await store.create(record(1, run_id=5))
    a = await store.get("dep_1")
    b = await store.get("dep_1")
    assert a is not None and b is not None
    event = RunObserved(5, 1, "in_progress", None, None, "sha", NOW)
    assert await store.save(deploys.apply(a, event).record)
    assert not await store.save(deploys.apply(b, event).record)


async def test_delivery_id_is_recorded_with_the_change(store: SqlStore) -> None:
    await store.create(record(1, run_id=5))
    current = await store.get("dep_1")
    assert current is not None
    changed = deploys.apply(current, RunObserved(5, 1, "in_progress", None, None, None, NOW))
    assert await store.save(changed.record, delivery_id="d-1")
    assert await store.delivery_seen("d-1")
    again = await store.get("dep_1")
    assert again is not None
    assert not await store.save(again, delivery_id="d-1")
    assert not await store.delivery_seen("d-2")


async def test_list_filters_and_orders_newest_first(store: SqlStore) -> None:
    for n in range(1, 6):
        await store.create(record(n, repo="acme/shop" if n % 2 else "acme/api"))
    assert [r.id for r in await store.recent()] == ["dep_5", "dep_4", "dep_3", "dep_2", "dep_1"]
    assert [r.id for r in await store.recent(repository="acme/api")] == ["dep_4", "dep_2"]
    assert [r.id for r in await store.recent(limit=2)] == ["dep_5", "dep_4"]
    assert await store.recent(state="completed") == []


async def test_outbox_claim_is_exclusive_and_records_attempts(store: SqlStore) -> None:
    transition = deploys.rejected_deployment(
        "dep_9",
        DeploymentRequest(repository="acme/shop"),
        ref="main",
        callback_url="http://orch.test/cb",
        message="Not Found",
        now=NOW,
    )
    await store.create(transition.record, enqueue_callback=True)
    claims = await asyncio.gather(
        store.claim_callbacks(owner="a", lease_seconds=30),
        store.claim_callbacks(owner="b", lease_seconds=30),
    )
    items = [item for claim in claims for item in claim]
    assert len(items) == 1
    item = items[0]
    owner = "a" if claims[0] else "b"
    assert item.deployment_id == "dep_9" and item.attempts == 0
    await store.finish_callback(item, owner=owner, state="pending", next_attempt_at=0, status=500)
    assert await store.outbox_depth() == 1
    retry = await store.claim_callbacks(owner="c", lease_seconds=30)
    assert [i.attempts for i in retry] == [1]
    await store.finish_callback(retry[0], owner="c", state="delivered", status=204)
    assert await store.outbox_depth() == 0
    stored = await store.get("dep_9")
    assert stored is not None
    assert stored.public().callback.state == "delivered"
    assert stored.public().callback.attempts == 2


async def test_expired_lease_is_claimed_again(store: SqlStore) -> None:
    transition = deploys.rejected_deployment(
        "dep_8",
        DeploymentRequest(repository="acme/shop"),
        ref="main",
        callback_url="http://orch.test/cb",
        message="x",
        now=NOW,
    )
    await store.create(transition.record, enqueue_callback=True)
    assert len(await store.claim_callbacks(owner="dies", lease_seconds=1.0)) == 1
    assert await store.claim_callbacks(owner="other", lease_seconds=30) == []
    await asyncio.sleep(1.1)
    assert len(await store.claim_callbacks(owner="other", lease_seconds=30)) == 1


async def test_unfinished_lists_only_deployments_without_verdict(store: SqlStore) -> None:
    await store.create(record(1, run_id=1))
    done = deploys.rejected_deployment(
        "dep_2",
        DeploymentRequest(repository="a/b"),
        ref="main",
        callback_url=None,
        message="x",
        now=NOW,
    )
    await store.create(done.record)
    assert [r.id for r in await store.unfinished()] == ["dep_1"]



async def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'private.db'}")
    await store.open()
    try:
        await store.ping()
        files = sorted(tmp_path.iterdir())  # noqa: ASYNC240 - a test, a folder of three files
        # The database and, while it is open, its write-ahead log and shared memory.
        assert {p.name for p in files} >= {"private.db", "private.db-wal", "private.db-shm"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        await store.close()


async def test_writes_that_arrive_together_each_hear_their_own_answer(store: SqlStore) -> None:
    # After an outage hundreds of saves arrive at once and share commits: each is still checked
    # against its own version (two writers of one deployment: exactly one wins), and a callback
    # is queued only with a save that won.
    for n in range(1, 121):
        await store.create(record(n, run_id=1000 + n))
    writers = [await store.get(f"dep_{n}") for n in range(1, 121)]
    writers += [await store.get(f"dep_{n}") for n in range(1, 121, 3)]

    async def save(current: DeploymentRecord | None) -> tuple[str, bool]:
        assert current is not None and current.run is not None
        event = RunObserved(current.run.id, 1, "in_progress", None, None, "sha", NOW)
        saved = await store.save(deploys.apply(current, event).record, enqueue_callback=True)
        return current.id, saved

    answers = await asyncio.gather(*(save(w) for w in writers))
    wins: dict[str, int] = {}
    for deployment_id, saved in answers:
        wins[deployment_id] = wins.get(deployment_id, 0) + saved
    assert wins == {f"dep_{n}": 1 for n in range(1, 121)}
    for n in range(1, 121):
        stored = await store.get(f"dep_{n}")
        assert stored is not None and stored.version == 2, (n, stored)
    assert await store.outbox_depth() == 120
