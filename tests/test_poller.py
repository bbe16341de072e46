"""Reconciliation and fallback polling by repository, and the per-installation API budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from ghapp.core.deploys import new_deployment
from ghapp.core.models import DeploymentRequest
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.http import RequestRecord
from ghapp.simulator.stack import Stack
from ghapp.simulator.state import RunState
from ghapp.store import SqlStore
from ghapp.store.base import StoreUnavailable

REPO = "acme/fleet"


def quick_deploy() -> Workflow:
    """One job, one step, no environment: a success needs one deployed_url request."""
    return Workflow(file="deploy.yml", name="Deploy",
                    jobs=[Job(name="deploy", steps=[Step("Deploy", command="./deploy.sh")])])


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """ghapp with webhooks lost and runs held, so what it learns comes from polling."""
    stack = await Stack.start(database_url, poll_after=3600)
    stack.sim.add_repository(REPO).add_workflow(quick_deploy())
    stack.sim.faults.drop_webhooks = True
    stack.sim.auto = False
    yield stack
    await stack.close()


async def completed_while_down(stack: Stack, count: int, *, created: int) -> list[RunState]:
    """Runs of REPO created at `created` (epoch seconds), finished with nobody listening."""
    runs = []
    for _ in range(count):
        run = await stack.sim.dispatch(REPO)
        run.created = created
        await stack.sim.finish(run.id)
        runs.append(run)
    return runs


async def remember(stack: Stack, runs: list[RunState], dispatched_at: int) -> list[str]:
    """Store the deployments ghapp had dispatched for these runs before it went down."""
    store = SqlStore(stack.settings.database_url)
    # Beside a busy suite a new PostgreSQL connection can take longer than ghapp's 3 s bound:
    # that is the machine, not what is tested here.
    for attempt in range(3):
        try:
            await store.open()
            break
        except Exception as exc:
            if attempt == 2 or not StoreUnavailable.covers(exc):
                raise
    installation = stack.sim.repos[REPO].installation_id
    ids = []
    try:
        for run in runs:
            record = new_deployment(
                f"dep_{uuid.uuid4().hex[:24]}", DeploymentRequest(repository=REPO, ref="main"),
                ref="main", callback_url=stack.receiver.url, installation_id=installation,
                run_id=run.id, html_url=f"https://github.com/{REPO}/actions/runs/{run.id}",
                now=datetime.fromtimestamp(dispatched_at, UTC),
            )
            await store.create(record)
            ids.append(record.id)
    finally:
        await store.close()
    return ids


async def restart_and_collect(stack: Stack, ids: list[str]) -> list[RequestRecord]:
    """Start ghapp again; wait for every verdict; the API requests it made meanwhile."""
    first = len(stack.sim.requests)
    await stack.start_ghapp()
    for deployment_id in ids:
        await stack.receiver.wait_for(deployment_id, timeout=60)
    await asyncio.sleep(0.3)
    for callback in stack.receiver.delivered():
        assert callback.deployment["verdict"]["status"] == "success"
    assert len(stack.receiver.delivered()) == len(ids), "one callback each"
    return [r for r in stack.sim.requests[first:] if r.origin == "api"]


def listings(requests: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in requests if r.path == f"/repos/{REPO}/actions/runs"]


def single_runs(requests: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in requests if r.path.startswith(f"/repos/{REPO}/actions/runs/")]


async def test_a_repository_of_150_unfinished_is_settled_by_two_pages(stack: Stack) -> None:
    await stack.stop_ghapp()
    now = int(time.time())
    runs = await completed_while_down(stack, 150, created=now)
    ids = await remember(stack, runs, now)
    requests = await restart_and_collect(stack, ids)
    pages = listings(requests)
    assert [(r.query["page"], r.query["per_page"]) for r in pages] == [("1", "100"), ("2", "100")]
    assert all(r.query["event"] == "workflow_dispatch" for r in pages)
    assert all(r.query["created"].startswith(">=") for r in pages)
    assert single_runs(requests) == []


async def test_past_the_1000_cap_the_window_is_narrowed(stack: Stack) -> None:
    await stack.stop_ghapp()
    base = int(time.time()) - 3000
    ours = await completed_while_down(stack, 3, created=base)
    # A thousand later dispatches of someone else's fill the capped listing.
    for n in range(1000):
        run = await stack.sim.dispatch(REPO)
        run.created = base + 100 + n
    ids = await remember(stack, ours, base)
    requests = await restart_and_collect(stack, ids)
    pages = listings(requests)
    # Ten pages of the newest thousand, then one of the window that the cap cut off.
    assert len(pages) == 11
    assert pages[0].query["created"].startswith(">=")
    assert ".." in pages[-1].query["created"]
    assert single_runs(requests) == []


async def test_a_run_the_listing_does_not_show_is_asked_about_alone(stack: Stack) -> None:
    await stack.stop_ghapp()
    now = int(time.time())
    listed = await completed_while_down(stack, 4, created=now)
    # GitHub's clock an hour behind ours: the run falls outside the listed window.
    hidden = await completed_while_down(stack, 1, created=now - 3600)
    ids = await remember(stack, listed + hidden, now)
    requests = await restart_and_collect(stack, ids)
    assert len(listings(requests)) == 1
    assert [r.path for r in single_runs(requests)] == [
        f"/repos/{REPO}/actions/runs/{hidden[0].id}"
    ]


async def test_low_budget_pauses_polling_until_reset_but_not_a_dispatch(
    database_url: str,
) -> None:
    stack = await Stack.start(database_url, poll_after=0.3)
    try:
        stack.sim.add_repository(REPO).add_workflow(quick_deploy())
        stack.sim.faults.drop_webhooks = True
        stack.sim.auto = False
        installation = stack.sim.repos[REPO].installation_id
        bucket = stack.sim.rate_limits.bucket(f"inst:{installation}")
        bucket.used = int(bucket.limit * 0.95)  # 5% left: below the 10% reserve
        reset = time.time() + 4
        bucket.reset = int(reset)
        started = time.monotonic()
        status, body = await stack.deploy(REPO)
        assert status == 202 and time.monotonic() - started < 2
        await stack.sim.finish(body["run"]["id"])
        started = time.monotonic()
        status, second = await stack.deploy(REPO)  # the pause holds up no dispatch
        assert status == 202 and time.monotonic() - started < 2
        callback = await stack.receiver.wait_for(body["id"], timeout=30)
        assert callback.arrived_at >= int(reset)
        polled = listings(stack.sim.requests) + single_runs(stack.sim.requests)
        assert polled and min(r.time for r in polled) >= int(reset)
        assert second["state"] == "dispatched"
    finally:
        await stack.close()
