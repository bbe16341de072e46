"""The event stream of a deployment (`GET /api/v1/deployments/{id}/events`) and live progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ghapp.client import Client
from ghapp.client._sse import EventParser, ServerEvent
from ghapp.runner import BackgroundServer
from ghapp.simulator.stack import Stack
from ghapp.web import events
from ghapp.web.app import create_app


def client_for(stack: Stack) -> Client:
    return Client(stack.base_url, stack.settings.orchestrator_token or "", max_retry_wait=0.2)


async def read_events(
    url: str, headers: dict[str, str], *, count: int | None = None, timeout: float = 30
) -> list[ServerEvent]:
    """The events of one connection until it ends (or `count` arrived)."""
    found: list[ServerEvent] = []
    parser = EventParser()
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers) as response,
        asyncio.timeout(timeout),
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for chunk in response.content.iter_any():
            found += parser.feed(chunk)
            if count is not None and len(found) >= count:
                break
    return found


@contextlib.asynccontextmanager
async def following(stack: Stack, deployment_id: str) -> AsyncIterator[list[Any]]:
    """Snapshots from `Client.events` collected in the background."""
    seen: list[Any] = []

    async def follow() -> None:
        async with client_for(stack) as client:
            async for deployment in client.events(deployment_id):
                seen.append(deployment)

    task = asyncio.create_task(follow())
    try:
        yield seen
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stream_goes_from_snapshot_to_completed_with_steps_moving(stack: Stack) -> None:
    stack.sim.step_delay = 0.1  # jobs move step by step, one workflow_job webhook each
    status, body = await stack.deploy("acme/shop")
    assert status == 202 and body["progress"] == {
        "jobs": [],
        "steps_completed": 0,
        "steps_total": 0,
        "estimated_completion_at": None,
        "waiting": None,
    }
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
    seen = await read_events(url, stack.auth)
    kinds = [event.event for event in seen]
    assert kinds[0] == "state" and kinds[-1] == "completed"
    assert "progress" in kinds
    ids = [int(event.id or 0) for event in seen]
    assert ids == sorted(set(ids)), "ids increase"
    snapshots = [json.loads(event.data) for event in seen]
    assert all(s["id"] == body["id"] for s in snapshots)
    done = [s["progress"]["steps_completed"] for s in snapshots if s["progress"]]
    assert done == sorted(done), "steps never go backwards"
    moving = [s for s in snapshots if 0 < s["progress"]["steps_completed"] < 5]
    assert moving, "a snapshot shows the job part way"
    final = snapshots[-1]
    assert final["verdict"]["status"] == "success"
    [job] = final["progress"]["jobs"]
    assert job["status"] == "completed" and job["conclusion"] == "success"
    assert final["progress"]["steps_completed"] == final["progress"]["steps_total"] >= 5
    assert [step["status"] for step in job["steps"]] == ["completed"] * len(job["steps"])


async def test_reconnect_with_last_event_id_gets_a_snapshot_with_a_higher_id(
    stack: Stack,
) -> None:
    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
    [first] = await read_events(url, stack.auth, count=1)
    assert first.event == "state"
    assert json.loads(first.data)["state"] == "dispatched"
    # Nothing changed: the snapshot after a reconnect still has a newer id.
    [again] = await read_events(url, {**stack.auth, "Last-Event-ID": first.id or ""}, count=1)
    assert again.event == "state" and int(again.id or 0) > int(first.id or 0)
    await stack.sim.advance(body["run"]["id"])  # the run starts, its job in a step
    await stack.sim.finish(body["run"]["id"])
    await stack.receiver.wait_for(body["id"])
    last = await read_events(url, {**stack.auth, "Last-Event-ID": again.id or ""})
    assert [event.event for event in last] == ["completed"]
    assert int(last[0].id or 0) > int(again.id or 0)


async def test_client_events_and_wait_follow_the_stream(stack: Stack) -> None:
    stack.sim.auto = False
    async with client_for(stack) as client:
        dep = await client.deploy("acme/api")
        async with following(stack, dep.id) as seen:
            await asyncio.sleep(0.3)
            await stack.sim.advance(dep.run.id if dep.run else 0)
            waiting = asyncio.create_task(client.wait(dep.id, timeout=20))
            await asyncio.sleep(0.3)
            await stack.sim.finish(dep.run.id if dep.run else 0)
            done = await waiting
        assert done.verdict is not None and done.verdict.status == "failure"
    assert seen[0].state == "dispatched" and seen[-1].state == "completed"
    assert any(s.state == "in_progress" and s.progress and s.progress.jobs for s in seen)


async def test_the_stream_needs_the_token_or_the_page_session(stack: Stack) -> None:
    from ghapp.web.operator.sessions import SESSION_COOKIE, make_session_cookie

    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
    assert stack.session is not None
    async with stack.session.get(url) as response:
        assert response.status == 401
    async with stack.session.get(url + "x", headers=stack.auth) as response:
        assert response.status == 404
    cookie, _ = make_session_cookie(stack.settings)
    [event] = await read_events(url, {"Cookie": f"{SESSION_COOKIE}={cookie}"}, count=1)
    assert event.event == "state"


async def test_keep_alive_comments_while_nothing_happens(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE", 0.2)
    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
    assert stack.session is not None
    async with stack.session.get(url, headers=stack.auth) as response, asyncio.timeout(10):
        text = b""
        while text.count(b": keep-alive") < 2:
            text += await response.content.readany()
    assert text.startswith(b"retry: ")


async def test_progress_from_polling_when_webhooks_are_silent(database_url: str) -> None:
    stack = await Stack.start(database_url, poll_after=0.2)
    try:
        from ghapp.cli.demo import demo_workflows

        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        stack.sim.auto = False
        stack.sim.faults.drop_webhooks = True
        _, body = await stack.deploy("acme/shop")
        await stack.sim.advance(body["run"]["id"])  # in progress, its job in its last step
        async with asyncio.timeout(15):
            while True:
                _, now = await stack.get(f"/api/v1/deployments/{body['id']}")
                if now["progress"]["jobs"]:
                    break
                await asyncio.sleep(0.05)
        assert now["state"] == "in_progress"
        [job] = now["progress"]["jobs"]
        assert job["status"] == "in_progress"
        statuses = [step["status"] for step in job["steps"]]
        simulated = stack.sim.runs[body["run"]["id"]].jobs[0].steps
        assert statuses == [step.status for step in simulated]
        assert statuses[-2:] == ["in_progress", "queued"]
        completed = statuses.count("completed")
        assert now["progress"]["steps_completed"] == completed == len(statuses) - 2
        # Unchanged jobs are asked for conditionally: GitHub answers 304.
        await asyncio.sleep(1.0)
        jobs_path = f"/actions/runs/{body['run']['id']}/jobs"
        asked = [r for r in stack.sim.requests if jobs_path in r.path and r.method == "GET"]
        assert len(asked) >= 2 and any(r.status == 304 for r in asked)
    finally:
        await stack.close()


async def test_estimate_from_recent_successes(stack: Stack) -> None:
    stack.sim.step_delay = 0.05
    for _ in range(2):
        _, body = await stack.deploy("acme/shop")
        await stack.receiver.wait_for(body["id"])
    _, body = await stack.deploy("acme/shop")
    done = await stack.receiver.wait_for(body["id"])
    estimate = done.deployment["progress"]["estimated_completion_at"]
    assert estimate is not None
    _, other = await stack.deploy("acme/shop", inputs={"environment": "staging"})
    other_done = await stack.receiver.wait_for(other["id"])
    assert other_done.deployment["progress"]["estimated_completion_at"] is None


async def test_two_replicas_a_change_on_one_reaches_a_stream_on_the_other(
    postgres_url: str,
) -> None:
    stack = await Stack.start(postgres_url)
    other = BackgroundServer(create_app(stack.settings, retry_base=0.05))
    try:
        from ghapp.cli.demo import demo_workflows

        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        other_url = await other.start()
        stack.sim.auto = False
        _, body = await stack.deploy("acme/shop")  # webhooks go to the first replica
        url = f"{other_url}/api/v1/deployments/{body['id']}/events"
        arrivals: list[tuple[float, ServerEvent]] = []

        async def follow() -> None:
            parser = EventParser()
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, headers=stack.auth) as response,
            ):
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        arrivals.append((asyncio.get_running_loop().time(), event))

        task = asyncio.create_task(follow())
        async with asyncio.timeout(10):
            while True:
                if arrivals:
                    break
                await asyncio.sleep(0.01)
        started = asyncio.get_running_loop().time()
        await stack.sim.advance(body["run"]["id"])
        async with asyncio.timeout(10):
            while True:
                if len(arrivals) >= 2:
                    break
                await asyncio.sleep(0.005)
        assert arrivals[1][0] - started < 1.0
        await stack.sim.finish(body["run"]["id"])
        await asyncio.wait_for(task, 15)
        assert arrivals[-1][1].event == "completed"
    finally:
        await other.stop()
        await stack.close()


async def test_open_streams_end_when_the_server_shuts_down(stack: Stack) -> None:
    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/events"
    reading = asyncio.create_task(read_events(url, stack.auth))
    await asyncio.sleep(0.3)
    async with asyncio.timeout(5):  # uvicorn would wait for the stream forever
        await stack.stop_ghapp()
    seen = await asyncio.wait_for(reading, 5)  # the stream ended: the client reconnects
    assert seen[0].event == "state" and "completed" not in [event.event for event in seen]
