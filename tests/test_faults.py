"""Exactly one correct verdict through GitHub's and the network's faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import ProcessServer, Stack


async def started(database_url: str, **settings: Any) -> Stack:
    stack = await Stack.start(database_url, retry_base=0.02, **settings)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    return stack


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    stack = await started(database_url, poll_after=0.3)
    yield stack
    await stack.close()


async def settle(stack: Stack, seconds: float = 0.5) -> None:
    """Let late or duplicated work happen, so a second callback would have arrived."""
    await asyncio.sleep(seconds)


def callbacks_for(stack: Stack, deployment_id: str) -> list[dict[str, Any]]:
    return [c.deployment for c in stack.receiver.delivered() if c.deployment["id"] == deployment_id]


async def test_all_webhooks_dropped_verdict_arrives_by_conditional_polling(stack: Stack) -> None:
    stack.sim.faults.drop_webhooks = True
    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    run_id = body["run"]["id"]
    await asyncio.sleep(1.0)  # a few silent polls of a queued run: these must be 304s
    await stack.sim.finish(run_id)
    callback = await stack.receiver.wait_for(body["id"], timeout=20)
    verdict = callback.deployment["verdict"]
    assert verdict["status"] == "success"
    assert verdict["deployed_url"] == "https://shop.example.com"  # from the deployments API
    # One listing of the repository's dispatched runs answers, not a request per run.
    polls = [r for r in stack.sim.requests if r.path.endswith("/acme/shop/actions/runs")]
    assert all(r.query["event"] == "workflow_dispatch" for r in polls)
    assert not [r for r in stack.sim.requests if r.path.endswith(f"/actions/runs/{run_id}")]
    conditional = [r for r in polls if "if-none-match" in {h.lower() for h in r.headers}]
    assert conditional, "polling sent no If-None-Match"
    assert any(r.status == 304 for r in polls)
    await settle(stack)
    assert len(callbacks_for(stack, body["id"])) == 1


async def test_webhook_after_polling_reports_nothing_twice(stack: Stack) -> None:
    stack.sim.faults.delay_webhooks = 1.5  # the poller sees the end first
    _, body = await stack.deploy("acme/api")
    await stack.receiver.wait_for(body["id"], timeout=20)
    await asyncio.sleep(2.0)  # the delayed webhooks land now
    assert len(callbacks_for(stack, body["id"])) == 1


async def test_duplicated_and_reordered_webhooks_give_one_correct_verdict(stack: Stack) -> None:
    stack.sim.faults.duplicate_webhooks = True
    stack.sim.faults.reorder_webhooks = True
    _, ok = await stack.deploy("acme/shop")
    _, bad = await stack.deploy("acme/api")
    good_verdict = (await stack.receiver.wait_for(ok["id"])).deployment["verdict"]
    bad_verdict = (await stack.receiver.wait_for(bad["id"])).deployment["verdict"]
    await settle(stack)
    assert good_verdict["status"] == "success"
    assert good_verdict["deployed_url"] == "https://shop.example.com"
    assert bad_verdict["status"] == "failure"
    assert bad_verdict["failed_jobs"][0]["failed_step"]["name"] == "Deploy on the server"
    assert len(callbacks_for(stack, ok["id"])) == 1
    assert len(callbacks_for(stack, bad["id"])) == 1


async def test_burst_of_502_and_secondary_rate_limit_are_waited_out(stack: Stack) -> None:
    stack.sim.faults.server_errors = 3
    stack.sim.faults.secondary_rate_limit = 1
    stack.sim.faults.retry_after = 1
    status, body = await stack.deploy("acme/api")
    assert status == 202
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    assert callback.deployment["verdict"]["failed_jobs"]
    limited = [r for r in stack.sim.requests if r.fault == "secondary_rate_limit"]
    assert limited
    after = [r for r in stack.sim.requests if r.origin == "api" and r.time > limited[0].time]
    assert after and after[0].time - limited[0].time >= 0.95  # Retry-After: 1 honoured
    assert sum(1 for r in stack.sim.requests if r.fault == "server_errors") == 3


async def test_github_down_for_dispatch_is_503_and_records_nothing(stack: Stack) -> None:
    stack.sim.faults.server_errors = 1000
    status, body = await stack.deploy("acme/shop")
    assert status == 503 and body["error"] == "github_unavailable"
    stack.sim.faults.server_errors = 0
    _, listing = await stack.get("/api/v1/deployments")
    assert listing["deployments"] == []


async def test_expired_installation_token_is_renewed(stack: Stack) -> None:
    _, first = await stack.deploy("acme/shop")
    await stack.receiver.wait_for(first["id"])
    stack.sim.revoke_tokens()
    _, second = await stack.deploy("acme/shop")
    assert second["state"] == "dispatched"
    await stack.receiver.wait_for(second["id"])


async def test_ghes_two_racing_deployments_each_get_their_own_run(database_url: str) -> None:
    stack = await started(database_url, poll_after=0.3)
    try:
        stack.sim.faults.ghes = True
        (_, first), (_, second) = await asyncio.gather(
            stack.deploy("acme/shop", inputs={"environment": "blue"}),
            stack.deploy("acme/shop", inputs={"environment": "green"}),
        )
        assert first["run"] is None and second["run"] is None
        got = [
            (await stack.receiver.wait_for(d["id"], timeout=20)).deployment for d in (first, second)
        ]
        runs = {d["id"]: d["run"]["id"] for d in got}
        assert len(set(runs.values())) == 2
        for deployment in got:
            run = stack.sim.runs[deployment["run"]["id"]]
            assert deployment["id"] in run.display_title
            assert run.inputs["environment"] == deployment["inputs"]["environment"]
    finally:
        await stack.close()


async def test_ghes_without_correlation_input_says_it_could_not_decide(
    database_url: str,
) -> None:
    stack = await started(database_url, poll_after=0.2, run_lookup_timeout=8)
    try:
        stack.sim.faults.ghes = True
        workflow = Workflow(file="deploy.yml", name="Deploy", declares_ghapp_id=False)
        stack.sim.add_repository("acme/old", default_branch="main").add_workflow(workflow)
        (_, first), (_, second) = await asyncio.gather(
            stack.deploy("acme/old"), stack.deploy("acme/old")
        )
        for d in (first, second):
            verdict = (await stack.receiver.wait_for(d["id"], timeout=30)).deployment["verdict"]
            assert verdict["reason"] == "run_not_found"
            assert "could not decide" in verdict["summary"]
        # One deployment alone is matched, correlation input or not.
        stack.sim.add_repository("acme/old2", default_branch="main").add_workflow(workflow)
        _, alone = await stack.deploy("acme/old2")
        verdict = (await stack.receiver.wait_for(alone["id"], timeout=30)).deployment["verdict"]
        assert verdict["status"] == "success", verdict
    finally:
        await stack.close()


async def test_run_never_found_gives_run_not_found(database_url: str) -> None:
    stack = await started(database_url, poll_after=0.2, run_lookup_timeout=1)
    try:
        stack.sim.faults.ghes = True
        stack.sim.faults.drop_webhooks = True
        repo = stack.sim.add_repository("acme/ghost", default_branch="main")
        repo.add_workflow(Workflow(file="deploy.yml", name="Deploy", jobs=[]))
        stack.sim.auto = False  # runs stay queued and are listed, but titles carry no match
        _, body = await stack.deploy("acme/ghost", ref="main")
        # Make the run unfindable: it carries another deployment's id.
        for run in stack.sim.runs.values():
            run.display_title = "Deploy dep_someone_else"
        verdict = (await stack.receiver.wait_for(body["id"], timeout=20)).deployment["verdict"]
        assert verdict["status"] == "failure" and verdict["reason"] == "run_not_found"
    finally:
        await stack.close()


async def test_run_going_on_too_long_is_timed_out(database_url: str) -> None:
    stack = await started(database_url, poll_after=0.2, run_timeout=1)
    try:
        stack.sim.auto = False
        _, body = await stack.deploy("acme/shop")
        await stack.sim.advance(body["run"]["id"])
        verdict = (await stack.receiver.wait_for(body["id"], timeout=20)).deployment["verdict"]
        assert verdict["reason"] == "timed_out"
        assert "stopped waiting" in verdict["summary"]
    finally:
        await stack.close()


async def test_cancel_cancels_the_run_and_the_verdict_follows(stack: Stack) -> None:
    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    await stack.sim.advance(body["run"]["id"])
    assert stack.session is not None
    url = f"{stack.base_url}/api/v1/deployments/{body['id']}/cancel"
    async with stack.session.post(url, headers=stack.auth) as response:
        assert response.status == 202
    verdict = (await stack.receiver.wait_for(body["id"], timeout=20)).deployment["verdict"]
    assert verdict["reason"] == "cancelled"
    assert stack.sim.runs[body["run"]["id"]].conclusion == "cancelled"
    async with stack.session.post(url, headers=stack.auth) as response:
        assert response.status == 409


async def test_rerun_after_verdict_is_recorded_not_reported_again(stack: Stack) -> None:
    _, body = await stack.deploy("acme/api")
    await stack.receiver.wait_for(body["id"])
    await stack.sim.rerun(body["run"]["id"])
    await stack.sim.wait_for_run(body["run"]["id"], status="completed")
    await settle(stack)
    assert len(callbacks_for(stack, body["id"])) == 1
    _, stored = await stack.get(f"/api/v1/deployments/{body['id']}")
    assert stored["run"]["attempt"] == 1
    assert [r["attempt"] for r in stored["reruns"]] == [2]


async def test_callback_given_up_then_resent_by_an_operator(database_url: str) -> None:
    # Long enough for a second attempt on a loaded machine (retries start 20 ms apart).
    stack = await started(database_url, callback_retry_for=3.0)
    try:
        stack.receiver.fail_with = [500] * 1000
        _, body = await stack.deploy("acme/shop")
        async with asyncio.timeout(20):
            while True:
                _, stored = await stack.get(f"/api/v1/deployments/{body['id']}")
                if stored["callback"]["state"] == "failed":
                    break
                await asyncio.sleep(0.05)
        attempts = stored["callback"]["attempts"]
        assert attempts >= 2
        stack.receiver.fail_with = []
        assert stack.session is not None
        url = f"{stack.base_url}/api/v1/deployments/{body['id']}/callback"
        async with stack.session.post(url, headers=stack.auth) as response:
            assert response.status == 202
        callback = await stack.receiver.wait_for(body["id"])
        delivery_ids = {c.headers["X-Ghapp-Delivery"] for c in stack.receiver.received}
        assert len(delivery_ids) == 1
        assert callback.deployment["verdict"]["status"] == "success"
    finally:
        await stack.close()


async def test_sigkill_after_dispatch_webhook_sent_while_down(
    database_url: str, tmp_path: Path
) -> None:
    stack = await started(database_url)
    await stack.stop_ghapp()  # this test runs ghapp as a real process instead
    server = ProcessServer(stack.settings, log_path=str(tmp_path / "ghapp.log"))
    try:
        stack.base_url = await server.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        stack.sim.auto = False
        _, body = await stack.deploy("acme/api")
        await server.kill()
        await stack.sim.finish(body["run"]["id"])  # the completed webhook finds nobody
        assert any(d.status is None for d in stack.sim.deliveries)
        server = ProcessServer(stack.settings, log_path=str(tmp_path / "ghapp2.log"))
        stack.base_url = await server.start()
        callback = await stack.receiver.wait_for(body["id"], timeout=30)
        assert callback.deployment["verdict"]["failed_jobs"][0]["name"] == "deploy"
        await settle(stack, 1.0)
        assert len(callbacks_for(stack, body["id"])) == 1
    finally:
        await server.kill()
        await stack.close()


async def test_unrelated_runs_are_ignored_cheaply(stack: Stack) -> None:
    workflow = Workflow(file="ci.yml", name="CI", jobs=[Job(name="test", steps=[Step("Test")])])
    stack.sim.add_repository("acme/shop").add_workflow(workflow)
    run = await stack.sim.dispatch("acme/shop", workflow="ci.yml")
    await stack.sim.wait_for_run(run.id, status="completed")
    outcomes = [d.status for d in stack.sim.deliveries if d.event == "workflow_run"]
    assert outcomes and all(status == 200 for status in outcomes)
    _, listing = await stack.get("/api/v1/deployments")
    assert listing["deployments"] == []
