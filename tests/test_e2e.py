"""The whole loop over real HTTP on loopback: ghapp on uvicorn, the simulator, a receiver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state of another server
            await asyncio.sleep(0.02)


async def delivered(stack: Stack, deployment_id: str) -> dict[str, Any]:
    """The stored deployment once ghapp has recorded its callback's outcome."""
    async with asyncio.timeout(10):
        while True:
            _, stored = await stack.get(f"/api/v1/deployments/{deployment_id}")
            if stored["callback"]["state"] != "pending":
                return dict(stored)
            await asyncio.sleep(0.02)


async def test_success_gives_one_signed_callback_with_deployed_url(stack: Stack) -> None:
    status, body = await stack.deploy("acme/shop")
    assert status == 202
    assert body["state"] == "dispatched" and body["run"]["id"] > 0
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.signature_ok
    assert callback.headers["X-Ghapp-Event"] == "deployment.completed"
    assert callback.headers["X-Ghapp-Delivery"]
    deployment = callback.deployment
    assert deployment["state"] == "completed"
    assert deployment["verdict"]["status"] == "success"
    assert deployment["verdict"]["reason"] is None
    assert deployment["verdict"]["deployed_url"] == "https://shop.example.com"
    assert deployment["run"]["conclusion"] == "success"
    stored = await delivered(stack, body["id"])
    assert len(stack.receiver.received) == 1
    assert stored["callback"] == {"url": stack.receiver.url, "state": "delivered", "attempts": 1}
    assert stored["verdict"] == deployment["verdict"]


async def test_failure_reports_the_failed_job_and_step(stack: Stack) -> None:
    status, body = await stack.deploy("acme/api")
    assert status == 202
    callback = await stack.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert verdict["status"] == "failure"
    assert verdict["reason"] == "failure"
    assert verdict["deployed_url"] is None
    [job] = verdict["failed_jobs"]
    assert job["name"] == "deploy"
    assert job["conclusion"] == "failure"
    assert job["failed_step"] == {"number": 10, "name": "Deploy on the server"}
    assert f"/actions/runs/{body['run']['id']}/job/{job['id']}" in job["html_url"]
    assert "Job `deploy` failed at step `Deploy on the server`" in verdict["summary"]


async def test_unknown_workflow_is_rejected_with_githubs_message(stack: Stack) -> None:
    status, body = await stack.deploy("acme/shop", workflow="nope.yml")
    assert status == 202
    assert body["state"] == "completed"
    assert body["verdict"]["reason"] == "dispatch_rejected"
    assert "Not Found" in body["verdict"]["summary"]
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["reason"] == "dispatch_rejected"


async def test_unknown_ref_and_uninstalled_repository_are_rejected(stack: Stack) -> None:
    status, body = await stack.deploy("acme/shop", ref="no-such-branch")
    assert status == 202 and body["verdict"]["reason"] == "dispatch_rejected"
    assert "no-such-branch" in body["verdict"]["summary"]
    status, body = await stack.deploy("other/repo")
    assert status == 202 and body["verdict"]["reason"] == "dispatch_rejected"
    assert "not installed" in body["verdict"]["summary"]


async def test_wrong_bearer_token_is_refused_and_records_nothing(stack: Stack) -> None:
    status, body = await stack.deploy("acme/shop", headers={"Authorization": "Bearer wrong"})
    assert status == 401 and body["error"] == "unauthorized"
    assert stack.sim.runs == {}
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/api/v1/deployments") as response:
        assert response.status == 401
    status, listing = await stack.get("/api/v1/deployments")
    assert status == 200 and listing["deployments"] == []


async def test_invalid_bodies(stack: Stack) -> None:
    assert stack.session is not None
    async with stack.session.post(
        f"{stack.base_url}/api/v1/deployments", data=b"{not json", headers=stack.auth
    ) as response:
        assert response.status == 400
    status, body = await stack.deploy("no-slash")
    assert status == 422
    assert body["errors"][0]["field"] == "repository"
    status, body = await stack.deploy("acme/shop", callback_url="https://evil.example/cb")
    assert status == 422 and body["errors"][0]["field"] == "callback_url"
    status, body = await stack.deploy("acme/shop", surprise=1)
    assert status == 422 and body["errors"][0]["field"] == "surprise"
    assert stack.sim.runs == {}


async def test_idempotency_key(stack: Stack) -> None:
    key = {"Idempotency-Key": "abc-123"}
    first_status, first = await stack.deploy("acme/shop", headers=key)
    again_status, again = await stack.deploy("acme/shop", headers=key)
    assert (first_status, again_status) == (202, 200)
    assert again["id"] == first["id"]
    assert len(stack.sim.runs) == 1
    status, body = await stack.deploy("acme/api", headers=key)
    assert status == 409 and body["error"] == "idempotency_conflict"
    assert len(stack.sim.runs) == 1


async def test_list_newest_first_and_filters(stack: Stack) -> None:
    ids = [(await stack.deploy(repo))[1]["id"] for repo in ("acme/shop", "acme/api", "acme/shop")]
    status, body = await stack.get("/api/v1/deployments")
    assert status == 200
    assert [d["id"] for d in body["deployments"]] == ids[::-1]
    _, body = await stack.get("/api/v1/deployments?repository=acme/api")
    assert [d["id"] for d in body["deployments"]] == [ids[1]]
    _, body = await stack.get("/api/v1/deployments?limit=1")
    assert len(body["deployments"]) == 1
    status, _ = await stack.get("/api/v1/deployments?limit=0")
    assert status == 422
    status, _ = await stack.get("/api/v1/deployments/dep_nope")
    assert status == 404


async def post_webhook(
    stack: Stack, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    assert stack.session is not None
    async with stack.session.post(
        stack.base_url + stack.settings.webhook_path, data=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_webhook_checks(stack: Stack) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    good = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": stack.sim.sign(body),
        "Content-Type": "application/json",
    }
    assert (await post_webhook(stack, body, good))[0] == 200
    bad = {**good, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert (await post_webhook(stack, body, bad))[0] == 401
    unsigned = {k: v for k, v in good.items() if k != "X-Hub-Signature-256"}
    assert (await post_webhook(stack, body, unsigned))[0] == 401
    no_event = {k: v for k, v in good.items() if k != "X-GitHub-Event"}
    assert (await post_webhook(stack, body, no_event))[0] == 400
    not_json = b"this is not json"
    status, _ = await post_webhook(
        stack, not_json, {**good, "X-Hub-Signature-256": stack.sim.sign(not_json)}
    )
    assert status == 400
    status, answer = await post_webhook(stack, body, {**good, "X-GitHub-Event": "star"})
    assert status in (200, 202) and answer["outcome"] == "ignored"


async def test_webhook_secret_rotation(database_url: str) -> None:
    stack = await Stack.start(database_url)
    try:
        current = stack.settings.webhook_secret[0]
        stack.settings.webhook_secret = ["retired-secret", current]
        body = b'{"zen": "x"}'
        headers = {
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "d-2",
            "X-Hub-Signature-256": stack.sim.sign(body),
        }
        assert (await post_webhook(stack, body, headers))[0] == 200
    finally:
        await stack.close()


async def test_repeated_delivery_is_not_processed_twice(stack: Stack) -> None:
    stack.sim.faults.duplicate_webhooks = True
    status, body = await stack.deploy("acme/shop")
    assert status == 202
    await stack.receiver.wait_for(body["id"])
    await asyncio.sleep(0.3)
    assert len(stack.receiver.received) == 1
    duplicates = [d for d in stack.sim.deliveries if d.event == "workflow_run"]
    guids = [d.guid for d in duplicates]
    assert len(guids) > len(set(guids))  # the simulator really sent each one twice


async def test_restart_between_dispatch_and_completed_loses_nothing(stack: Stack) -> None:
    stack.sim.auto = False
    status, body = await stack.deploy("acme/api")
    assert status == 202
    run_id = body["run"]["id"]
    await stack.stop_ghapp()
    stack.sim.faults.hold_webhooks = True
    await stack.sim.finish(run_id)
    await stack.start_ghapp()
    stack.sim.faults.hold_webhooks = False
    await stack.sim.release_webhooks()
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["reason"] == "failure"
    assert callback.deployment["run"]["id"] == run_id


async def test_restart_while_gathering_resumes_the_verdict(stack: Stack) -> None:
    stack.sim.auto = False
    _, body = await stack.deploy("acme/api")
    run_id = body["run"]["id"]
    stack.sim.faults.server_errors = 1000  # the completed webhook lands, the jobs API fails
    await stack.sim.finish(run_id)
    await wait_until(
        lambda: any(
            d.event == "workflow_run" and d.action == "completed" for d in stack.sim.deliveries
        )
    )
    await stack.stop_ghapp()
    stack.sim.faults.server_errors = 0
    await stack.start_ghapp()
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["failed_jobs"][0]["name"] == "deploy"


async def test_callback_retried_with_the_same_delivery_id(stack: Stack) -> None:
    stack.receiver.fail_with = [500, 500, 500]
    _, body = await stack.deploy("acme/shop")
    await stack.receiver.wait_for(body["id"])
    deliveries = {c.headers["X-Ghapp-Delivery"] for c in stack.receiver.received}
    assert len(stack.receiver.received) == 4 and len(deliveries) == 1
    assert [c.status for c in stack.receiver.received] == [500, 500, 500, 204]
    stored = await delivered(stack, body["id"])
    assert stored["callback"]["state"] == "delivered" and stored["callback"]["attempts"] == 4


async def test_health_and_readiness(stack: Stack) -> None:
    assert stack.session is not None
    async with stack.session.get(f"{stack.base_url}/healthz") as response:
        assert response.status == 200
    async with stack.session.get(f"{stack.base_url}/readyz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ready"


async def test_jobs_with_several_failures_are_all_reported(stack: Stack) -> None:
    workflow = Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(name=f"deploy ({region})", steps=[Step("Set up job"), Step("Push", fail=True)])
            for region in ("eu", "us")
        ],
    )
    stack.sim.add_repository("acme/multi", default_branch="main").add_workflow(workflow)
    _, body = await stack.deploy("acme/multi")
    callback = await stack.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert sorted(j["name"] for j in verdict["failed_jobs"]) == ["deploy (eu)", "deploy (us)"]
    assert "1 other job failed too" in verdict["summary"]
