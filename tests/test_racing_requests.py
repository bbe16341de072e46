"""Requests that race each other stay correct and cheap: a burst of `reject` requests for one
environment dispatches exactly one, a burst of `cancel_previous` leaves exactly one deployment
running, on two PostgreSQL replicas (and two workers on one SQLite file); meanwhile other
routes and GitHub's webhooks are answered within a second. A double submit of the operator
page's rollback form is one rollback."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_operator_page import _login, _page, _session_cookie
from test_operator_releases import _history

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.web.operator.sessions import SESSION_COOKIE, read_session_cookie

ANSWERED_WITHIN = 1.0


def dispatches(stack: Stack) -> int:
    """Dispatch requests the simulator received, whatever it answered."""
    return stack.sim.api_calls(method="POST", path="/dispatches")


@pytest.fixture(params=["postgresql-two-replicas", "sqlite-two-workers"])
async def replicas(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Stack, list[str]]]:
    """ghapp twice on one database (two replicas on PostgreSQL, `--workers 2` on SQLite)."""
    sqlite = database_url.startswith("sqlite")
    if sqlite != request.param.startswith("sqlite"):
        pytest.skip("that pairing is covered by the other parameter")
    # Runs long enough to be unfinished during the whole burst.
    stack = await Stack.start(database_url, retry_base=0.05, step_delay=1.0)
    await stack.stop_ghapp()
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    servers = (
        [ProcessServer(stack.settings, str(tmp_path / "serve.log"), workers=2)]
        if sqlite
        else [ProcessServer(stack.settings, str(tmp_path / f"r{n}.log")) for n in (1, 2)]
    )
    try:
        urls = list(await asyncio.gather(*(server.start(timeout=60) for server in servers)))
        stack.base_url = urls[0]
        stack.sim.webhook_url = urls[-1] + stack.settings.webhook_path
        # A server that has run before the burst (its GitHub lookups cached, its
        # connections open), as in production: one deploy to another environment each.
        # Each to its own environment, so they run side by side and the set-up stays short.
        async with aiohttp.ClientSession() as session:
            warming = []
            for n, url in enumerate(urls * 2):
                warm = {"repository": "acme/shop", "inputs": {"environment": f"warm-{n}"}}
                status, body = await post_deploy(session, stack, url, warm)
                assert status == 202, body
                warming.append(stack.receiver.wait_for(body["id"], timeout=60))
            await asyncio.gather(*warming)
        yield stack, urls * 2 if sqlite else urls
    finally:
        for server in servers:
            await server.kill()
        await stack.close()


async def post_deploy(
    session: aiohttp.ClientSession, stack: Stack, url: str, body: dict[str, Any]
) -> tuple[int, Any]:
    async with session.post(
        f"{url}/api/v1/deployments", json=body, headers=stack.auth
    ) as response:
        return response.status, await response.json()


async def bystanders(stack: Stack, urls: list[str]) -> list[float]:
    """What else happens during the burst: a GET on each replica and a webhook of GitHub's
    (a run no deployment watches); how long each took."""
    await asyncio.sleep(0.05)  # into the burst
    raw = json.dumps({"action": "completed", "workflow_run": {
        "id": 5, "event": "push", "status": "completed"}}).encode()
    timings = []
    async with aiohttp.ClientSession() as session:
        for url in urls:
            started = time.monotonic()
            async with session.get(f"{url}/api/v1/deployments?limit=5",
                                   headers=stack.auth) as response:
                assert response.status == 200
            timings.append(time.monotonic() - started)
            started = time.monotonic()
            async with session.post(
                url + stack.settings.webhook_path, data=raw,
                headers={"X-GitHub-Event": "workflow_run",
                         "X-GitHub-Delivery": f"bystander-{url}-{time.monotonic()}",
                         "X-Hub-Signature-256": stack.sim.sign(raw)},
            ) as response:
                assert response.status == 200
            timings.append(time.monotonic() - started)
    return timings


async def burst(
    stack: Stack, urls: list[str], count: int, concurrency: str
) -> tuple[list[tuple[int, Any]], list[float], float]:
    body = {"repository": "acme/shop", "inputs": {"environment": "production"},
            "concurrency": concurrency}
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers, timings = await asyncio.gather(
            asyncio.gather(*(post_deploy(session, stack, urls[n % len(urls)], body)
                             for n in range(count))),
            bystanders(stack, urls),
        )
    return list(answers), timings, time.monotonic() - started


async def test_reject_burst_dispatches_exactly_one(replicas: tuple[Stack, list[str]]) -> None:
    stack, urls = replicas
    sent, runs = dispatches(stack), len(stack.sim.runs)
    answers, timings, took = await burst(stack, urls, 30, "reject")
    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: 1, 409: 29}, answers
    [winner] = [body for status, body in answers if status == 202]
    for status, body in answers:
        if status == 409:
            assert body["error"] == "conflict" and body["deployment_id"] == winner["id"], body
    assert dispatches(stack) == sent + 1 and len(stack.sim.runs) == runs + 1
    assert max(timings) < ANSWERED_WITHIN, timings
    print(f"\nreject x30: {took:.2f} s for the burst; bystanders {max(timings) * 1000:.0f} ms "
          "at most")
    callback = await stack.receiver.wait_for(winner["id"], timeout=60)
    assert callback.deployment["verdict"]["status"] == "success"


async def test_cancel_previous_burst_leaves_one_running(
    replicas: tuple[Stack, list[str]],
) -> None:
    stack, urls = replicas
    sent, before = dispatches(stack), set(stack.sim.runs)
    answers, timings, took = await burst(stack, urls, 20, "cancel_previous")
    assert Counter(status for status, _ in answers) == {202: 20}, answers
    assert max(timings) < ANSWERED_WITHIN, timings
    ids = [body["id"] for _, body in answers]
    # Each request superseded every earlier one: all but one end `superseded`.
    verdicts = {}
    for deployment_id in ids:
        callback = await stack.receiver.wait_for(deployment_id, timeout=120)
        verdicts[deployment_id] = callback.deployment["verdict"]
    reasons = Counter(v["reason"] or v["status"] for v in verdicts.values())
    assert reasons == {"superseded": 19, "success": 1}, reasons
    # While the survivor ran, it was the only unfinished deployment of the environment.
    [survivor] = [i for i, v in verdicts.items() if v["status"] == "success"]
    assert dispatches(stack) == sent + 20
    cancelled = [
        run for run_id, run in stack.sim.runs.items()
        if run_id not in before and run.conclusion != "success"
    ]
    assert len(cancelled) == 19
    delivered = Counter(c.deployment["id"] for c in stack.receiver.delivered())
    assert all(delivered[i] == 1 for i in ids), delivered
    print(f"\ncancel_previous x20: {took:.2f} s for the burst; bystanders "
          f"{max(timings) * 1000:.0f} ms at most; survivor {survivor}")


async def test_rollback_form_submitted_twice_is_one_rollback(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    try:
        await _history(stack)
        _, headers = await _login(stack, stack.settings.orchestrator_token or "")
        value, _ = _session_cookie(headers)
        cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
        session = read_session_cookie(stack.settings, value)
        assert session is not None
        status, html, _ = await _page(stack, "/", headers=cookie)
        assert status == 200
        [key] = re.findall(r'name="idempotency_key" value="([^"]+)"', html)
        # Each drawing of the page has its own key: a deliberate second rollback is another.
        _, again, _ = await _page(stack, "/", headers=cookie)
        assert re.findall(r'name="idempotency_key" value="([^"]+)"', again) != [key]
        url = f"{stack.base_url}/ui/repos/acme/shop/environments/production/rollback"
        runs = len(stack.sim.world.runs)
        assert stack.session is not None

        async def submit() -> str:
            assert stack.session is not None
            async with stack.session.post(
                url, data={"csrf": session.csrf, "back": "/", "idempotency_key": key},
                headers=cookie, allow_redirects=False,
            ) as response:
                return str(response.headers["Location"])

        # Five quick clicks: one rollback, each answered as started.
        locations = await asyncio.gather(*(submit() for _ in range(5)))
        assert set(locations) == {"/?notice=rollback_started"}
        await asyncio.sleep(0.5)
        assert len(stack.sim.world.runs) == runs + 1
        _, listing = await stack.get("/api/v1/deployments")
        assert sum(d["kind"] == "rollback" for d in listing["deployments"]) == 1
    finally:
        await stack.close()
