"""Deployment statistics: exact figures over a known history on both stores, the same figures
over HTTP, and a real sequence of outcomes through the simulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from ghapp.core import deploys
from ghapp.core.deploys import DeploymentRecord
from ghapp.core.models import DeploymentRequest, Verdict
from ghapp.simulator.stack import Stack
from ghapp.store import SqlStore
from ghapp.store.stats import interpolate

T0 = time.time() - 5 * 86400


def record(
    number: int,
    *,
    at: float,
    duration: float | None,
    status: str | None,
    reason: str | None = None,
    run: bool = True,
    environment: str = "production",
) -> DeploymentRecord:
    """A deployment created at `at` whose verdict came `duration` seconds later."""
    request = DeploymentRequest(repository="acme/shop", inputs={"environment": environment})
    created = datetime.fromtimestamp(at, UTC)
    made = deploys.new_deployment(
        f"dep_{number:04d}", request, ref="main", callback_url=None, installation_id=1,
        run_id=1000 + number if run else None, html_url=None, now=created,
    )
    if status is not None and duration is not None:
        made.verdict = Verdict(status=status, reason=reason, summary="-")  # type: ignore[arg-type]
        made.state = made.phase = "completed"
        made.completed_at = datetime.fromtimestamp(at + duration, UTC)
    return made


HISTORY = [
    record(1, at=T0 + 100, duration=10, status="success"),
    record(2, at=T0 + 200, duration=20, status="failure", reason="failure"),
    record(3, at=T0 + 300, duration=30, status="failure", reason="timed_out"),
    record(4, at=T0 + 400, duration=40, status="success"),
    record(5, at=T0 + 500, duration=5, status="failure", reason="superseded"),
    record(6, at=T0 + 600, duration=0, status="failure", reason="dispatch_rejected", run=False),
    record(7, at=T0 + 700, duration=50, status="failure", reason="failure"),
    record(8, at=T0 + 800, duration=60, status="success"),
    record(9, at=T0 + 900, duration=None, status=None),
    record(10, at=T0 + 100, duration=70, status="failure", environment="staging"),
    # Outside a 30-day window.
    record(11, at=T0 - 40 * 86400, duration=10, status="failure"),
]
PRODUCTION = {
    "repository": "acme/shop",
    "environment": "production",
    "deployments": 9,
    "successes": 3,
    "failures": 3,
    "change_failure_rate": 0.5,
    # Durations of the runs 5, 10, 20, 30, 40, 50, 60: p90 sits at rank 5.4.
    "duration_seconds": {"median": 30.0, "p90": 54.0},
    "deployments_per_day": 9 / 30,
    # Failures 2-3 restored by 4 (440 - 220 s), failure 7 by 8 (860 - 750 s).
    "time_to_restore_seconds": {"median": 165.0},
}
STAGING = {
    "repository": "acme/shop",
    "environment": "staging",
    "deployments": 1,
    "successes": 0,
    "failures": 1,
    "change_failure_rate": 1.0,
    "duration_seconds": {"median": 70.0, "p90": 70.0},
    "deployments_per_day": 1 / 30,
    "time_to_restore_seconds": {"median": None},
}


async def fill(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.open()
    try:
        for made in HISTORY:
            await store.create(made)
    finally:
        await store.close()


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def close(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [flat(a) for a in actual] == [pytest.approx(flat(e)) for e in expected]


async def test_known_history_gives_exact_figures(database_url: str) -> None:
    await fill(database_url)
    store = SqlStore(database_url)
    await store.open()
    try:
        since = time.time() - 30 * 86400
        close(await store.stats(since=since, days=30), [PRODUCTION, STAGING])
        close(await store.stats(since=since, days=30, environment="staging"), [STAGING])
        assert await store.stats(since=since, days=30, repository="acme/other") == []
    finally:
        await store.close()


async def test_stats_over_http(stack: Stack) -> None:
    await fill(stack.settings.database_url)
    status, body = await stack.get("/api/v1/stats?repository=acme/shop&days=30")
    assert status == 200
    assert body["since"].startswith(datetime.fromtimestamp(time.time() - 30 * 86400, UTC)
                                    .date().isoformat())
    close(body["stats"], [PRODUCTION, STAGING])
    status, body = await stack.get("/api/v1/stats?days=0")
    assert status == 422 and body["errors"][0]["field"] == "days"


async def test_stats_after_a_real_sequence_of_outcomes(stack: Stack) -> None:
    from test_releases import broken_workflow

    stack.sim.world.repos["acme/shop"].add_workflow(broken_workflow())
    for workflow in ("deploy.yml", "broken.yml", "broken.yml", "deploy.yml"):
        _, body = await stack.deploy("acme/shop", workflow=workflow)
        await stack.receiver.wait_for(body["id"])
    _, body = await stack.get("/api/v1/stats")
    [entry] = body["stats"]
    assert (entry["deployments"], entry["successes"], entry["failures"]) == (4, 2, 2)
    assert entry["change_failure_rate"] == 0.5
    assert entry["time_to_restore_seconds"]["median"] >= 0
    assert 0 <= entry["duration_seconds"]["median"] <= entry["duration_seconds"]["p90"]


def test_interpolation_matches_percentile_cont() -> None:
    ranked = dict(enumerate([1.0, 2.0, 4.0, 8.0]))
    assert interpolate(ranked, 4, 0.5) == 3.0
    assert interpolate(ranked, 4, 0.9) == pytest.approx(4.0 + 0.7 * 4.0)
    assert interpolate({0: 5.0}, 1, 0.9) == 5.0
