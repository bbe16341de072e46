"""The engine on a real store: deliveries about one deployment in a crowd, and signs of life."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from ghapp.core import deploys
from ghapp.core.deploys import DeploymentRecord, RunObserved
from ghapp.core.models import DeploymentRequest
from ghapp.github.client import GitHubClient
from ghapp.store import SqlStore
from ghapp.work.engine import Engine

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RUN = 4242


def observed(status: str, t: float, conclusion: str | None = None) -> RunObserved:
    return RunObserved(
        run_id=RUN, attempt=1, status=status, conclusion=conclusion,
        html_url=None, head_sha="abc", at=T0 + timedelta(seconds=t),
    )


class RecordingStore:
    """The real store, counting the writes of deployments."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.saves: list[int] = []

    async def save(self, record: DeploymentRecord, **kwargs: Any) -> bool:
        self.saves.append(record.version)
        return await self.store.save(record, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[tuple[Engine, RecordingStore]]:
    store = SqlStore(database_url)
    await store.open()
    recording = RecordingStore(store)
    # No GitHub call happens for these events (no verdict to gather): no client needed.
    engine = Engine(cast(SqlStore, recording), cast(GitHubClient, None))
    record = deploys.new_deployment(
        "dep_e1", DeploymentRequest(repository="acme/shop"), ref="main",
        callback_url="http://orch.test/cb", installation_id=1, run_id=RUN, html_url=None, now=T0,
    )
    await store.create(record)
    try:
        yield engine, recording
    finally:
        await engine.close()
        await store.close()


async def settle(engine: Engine) -> None:
    await asyncio.gather(*list(engine._tasks))


async def stored(recording: RecordingStore) -> DeploymentRecord:
    record = await recording.store.get("dep_e1")
    assert record is not None
    return record


async def test_a_crowd_of_signs_of_life_makes_one_write_after_the_answers(
    engine: tuple[Engine, RecordingStore],
) -> None:
    eng, recording = engine
    first = await eng.apply(await stored(recording), observed("in_progress", 1), delivery_id="a")
    assert first is not None and first.record.state == "in_progress"
    recording.saves.clear()
    # Twenty deliveries of the same status ten seconds later, all read before any is applied.
    seen = [await stored(recording) for _ in range(20)]
    alive = await eng.apply(seen[0], observed("in_progress", 11), delivery_id="b")
    assert alive is not None and alive.liveness_only
    assert recording.saves == []  # the answer did not wait for the write
    crowd = [
        eng.apply(r, observed("in_progress", 11), delivery_id=f"c{n}")
        for n, r in enumerate(seen[1:])
    ]
    results = await asyncio.gather(*crowd)
    assert all(result is not None and not result.changed for result in results)
    await settle(eng)
    assert recording.saves == [2]  # then one write of the clock
    after = await stored(recording)
    assert after.version == 3 and after.last_heard_at == T0 + timedelta(seconds=11)


async def test_a_new_status_while_a_sign_of_life_waits_is_written_with_it(
    engine: tuple[Engine, RecordingStore],
) -> None:
    eng, recording = engine
    await eng.apply(await stored(recording), observed("in_progress", 1), delivery_id="a")
    stale = await stored(recording)
    alive = await eng.apply(stale, observed("in_progress", 11), delivery_id="b")
    assert alive is not None and alive.liveness_only
    # The run completes before the sign of life is written; the record read earlier is stale.
    done = await eng.apply(stale, observed("completed", 12, "cancelled"), delivery_id="c")
    assert done is not None and done.changed and not done.liveness_only
    await settle(eng)
    after = await stored(recording)
    assert after.phase != "in_progress" and after.run is not None
    assert after.run.status == "completed"
    assert after.last_heard_at == T0 + timedelta(seconds=12)
    assert await recording.store.delivery_seen("c")
