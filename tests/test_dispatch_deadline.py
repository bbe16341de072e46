"""`POST /api/v1/deployments` answers within 5 s whatever GitHub does.

No dispatch can have reached GitHub (refused connections, an API that never answers the
lookups): `503` + `Retry-After`, a message naming the host, nothing recorded. A dispatch
request sent whose answer is late: `202`, recorded, the answer awaited in the background, and
never a second dispatch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import Stack, free_port

PROMISE = 5.0


@pytest.fixture
async def silent_api() -> AsyncIterator[str]:
    """An HTTP host that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def timed_deploy(stack: Stack, **kwargs: object) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    status, body = await stack.deploy("acme/shop", **kwargs)  # type: ignore[arg-type]
    return status, body, time.monotonic() - started


async def nothing_recorded(stack: Stack) -> None:
    status, listing = await stack.get("/api/v1/deployments")
    assert status == 200 and listing["deployments"] == []


@pytest.mark.parametrize("retry_base", [0.05, 1.0], ids=["quick-retries", "production-retries"])
async def test_refused_connections_answer_503_within_5s(
    database_url: str, retry_base: float
) -> None:
    port = free_port()  # nobody listens there
    stack = await Stack.start(
        database_url, retry_base=retry_base, github_api_url=f"http://127.0.0.1:{port}"
    )
    try:
        status, body, elapsed = await timed_deploy(stack)
        assert status == 503 and elapsed < PROMISE, (status, elapsed)
        assert body == {
            "error": "github_unavailable",
            "message": "GitHub could not take the dispatch: "
            f"GitHub API at 127.0.0.1:{port} refused the connection",
        }
        await nothing_recorded(stack)
    finally:
        await stack.close()


async def test_retry_after_on_503(database_url: str) -> None:
    stack = await Stack.start(database_url, github_api_url=f"http://127.0.0.1:{free_port()}")
    try:
        assert stack.session is not None
        async with stack.session.post(
            f"{stack.base_url}/api/v1/deployments",
            json={"repository": "acme/shop"},
            headers=stack.auth,
        ) as response:
            assert response.status == 503
            assert int(response.headers["Retry-After"]) > 0
    finally:
        await stack.close()


async def test_api_that_never_answers_is_503_within_5s(
    database_url: str, silent_api: str
) -> None:
    stack = await Stack.start(database_url, retry_base=1.0, github_api_url=silent_api)
    try:
        status, body, elapsed = await timed_deploy(stack)
        assert status == 503 and elapsed < PROMISE, (status, elapsed)
        where = silent_api.removeprefix("http://")
        assert body["message"] == (
            f"GitHub could not take the dispatch: GitHub API at {where} did not answer within 4 s"
        )
        await nothing_recorded(stack)
    finally:
        await stack.close()


async def test_github_5xx_to_the_lookups_is_503_within_5s(database_url: str) -> None:
    stack = await Stack.start(database_url, retry_base=1.0)
    stack.sim.add_repository("acme/shop", default_branch="main").add_workflow(
        demo_workflows()["acme/shop"]
    )
    try:
        stack.sim.faults.server_errors = 1000
        status, body, elapsed = await timed_deploy(stack)
        assert status == 503 and elapsed < PROMISE, (status, elapsed)
        where = stack.sim.api_url.removeprefix("http://")
        assert str(body["message"]).startswith(
            f"GitHub could not take the dispatch: GitHub API at {where} answered 502"
        )
        assert len(stack.sim.runs) == 0
        stack.sim.faults.server_errors = 0
        await nothing_recorded(stack)
    finally:
        await stack.close()


async def test_github_5xx_to_the_dispatch_is_202_then_run_not_found(database_url: str) -> None:
    # Third round: a 5xx answer to the dispatch itself means GitHub may have created the run.
    # The deployment is kept and answered 202 (`dispatched`, no run), never dispatched again,
    # and when no run carrying its id appears, its verdict is run_not_found, transient.
    stack = await Stack.start(database_url, retry_base=1.0, run_lookup_timeout=3, poll_after=0.5)
    stack.sim.add_repository("acme/shop", default_branch="main").add_workflow(
        demo_workflows()["acme/shop"]
    )
    try:
        # Installation, token, default branch and workflow file known: the dispatch gets the 502.
        status, first = await stack.deploy("acme/shop")
        assert status == 202
        await stack.receiver.wait_for(first["id"])
        stack.sim.faults.server_errors = 1
        status, body, elapsed = await timed_deploy(stack)
        assert status == 202 and elapsed < PROMISE, (status, body, elapsed)
        assert body["state"] == "dispatched" and body["run"] is None
        assert dispatches_sent(stack) == 2  # the first deploy's, and this one, once
        callback = await stack.receiver.wait_for(str(body["id"]), timeout=60)
        verdict = callback.deployment["verdict"]
        assert verdict["reason"] == "run_not_found", verdict
        assert "GitHub answered 502 to the dispatch" in verdict["summary"]
        assert verdict["cause"]["category"] == "transient" and verdict["cause"]["retryable"]
        assert len(stack.sim.runs) == 1
    finally:
        await stack.close()


def dispatches_sent(stack: Stack) -> int:
    """Dispatch requests that reached the simulator, whatever it answered."""
    return sum(
        1 for r in stack.sim.requests if r.method == "POST" and r.path.endswith("/dispatches")
    )


async def test_late_dispatch_answer_is_202_then_followed_once(stack: Stack) -> None:
    # GitHub takes the dispatch (its run starts at once) but answers only after 7 s.
    stack.sim.faults.dispatch_answer_delay = 7.0
    key = {"Idempotency-Key": "late-1"}
    status, body, elapsed = await timed_deploy(stack, headers=key)
    assert status == 202 and elapsed < PROMISE, (status, elapsed)
    assert body["state"] == "dispatched" and body["run"] is None
    # The orchestrator, unsure, asks again: the same deployment, nothing dispatched anew.
    again_status, again = await stack.deploy("acme/shop", headers=key)
    assert again_status == 200 and again["id"] == body["id"]
    callback = await stack.receiver.wait_for(str(body["id"]), timeout=30)
    deployment = callback.deployment
    assert deployment["verdict"]["status"] == "success"
    dispatches = [
        r for r in stack.sim.requests if r.method == "POST" and r.path.endswith("/dispatches")
    ]
    assert len(dispatches) == 1 and len(stack.sim.runs) == 1
    [run_id] = stack.sim.runs
    assert deployment["run"]["id"] == run_id
    await asyncio.sleep(0.5)
    assert [c.deployment["id"] for c in stack.receiver.delivered()] == [body["id"]]


async def demo_stack(database_url: str, **options: object) -> Stack:
    stack = await Stack.start(database_url, **options)  # type: ignore[arg-type]
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    return stack


def dispatches(stack: Stack) -> int:
    """Dispatches GitHub took (GHES refuses the run-details API version first)."""
    return sum(
        1
        for r in stack.sim.requests
        if r.method == "POST" and r.path.endswith("/dispatches") and (r.status or 0) < 400
    )


async def test_dispatch_answer_that_never_comes_run_found_by_listing(database_url: str) -> None:
    # GitHub takes the dispatch and never answers it: after the request's own time-out
    # (30 s in production, 8 s here) ghapp looks for the run the old way, and finds the one
    # it started.
    stack = await demo_stack(database_url, request_timeout=8.0)
    try:
        stack.sim.faults.dispatch_answer_delay = 3600.0
        status, body, elapsed = await timed_deploy(stack)
        assert status == 202 and elapsed < PROMISE, (status, elapsed)
        callback = await stack.receiver.wait_for(str(body["id"]), timeout=40)
        assert callback.deployment["verdict"]["status"] == "success"
        [run_id] = stack.sim.runs
        assert callback.deployment["run"]["id"] == run_id
        assert dispatches(stack) == 1
    finally:
        await stack.close()


async def test_late_answer_from_ghes_without_run_details_is_correlated(database_url: str) -> None:
    # GitHub Enterprise Server answers a dispatch 204 with no run id, and here only after 7 s:
    # 202 within the promise, then the run is found by listing (its title carries the
    # deployment id) and followed once.
    stack = await demo_stack(database_url, poll_after=0.3)
    try:
        stack.sim.faults.ghes = True
        stack.sim.faults.dispatch_answer_delay = 7.0
        status, body, elapsed = await timed_deploy(stack)
        assert status == 202 and elapsed < PROMISE, (status, elapsed)
        assert body["state"] == "dispatched" and body["run"] is None
        callback = await stack.receiver.wait_for(str(body["id"]), timeout=30)
        deployment = callback.deployment
        assert deployment["verdict"]["status"] == "success", deployment["verdict"]
        [run_id] = stack.sim.runs
        assert deployment["run"]["id"] == run_id
        assert body["id"] in stack.sim.runs[run_id].display_title
        assert dispatches(stack) == 1
        await asyncio.sleep(0.5)
        assert [c.deployment["id"] for c in stack.receiver.delivered()] == [body["id"]]
    finally:
        await stack.close()


async def test_connection_lost_after_the_dispatch_was_sent_is_never_sent_again(
    stack: Stack,
) -> None:
    # GitHub takes the dispatch and the connection drops before its answer: it may have
    # started a run, so ghapp records the deployment and finds the run by listing.
    stack.sim.faults.reset_dispatch_answer = True
    status, body, elapsed = await timed_deploy(stack)
    stack.sim.faults.reset_dispatch_answer = False
    assert status == 202 and elapsed < PROMISE, (status, body, elapsed)
    assert body["state"] == "dispatched" and body["run"] is None
    callback = await stack.receiver.wait_for(str(body["id"]), timeout=30)
    assert callback.deployment["verdict"]["status"] == "success"
    [run_id] = stack.sim.runs
    assert callback.deployment["run"]["id"] == run_id
    dispatches = [
        r for r in stack.sim.requests if r.method == "POST" and r.path.endswith("/dispatches")
    ]
    assert len(dispatches) == 1
