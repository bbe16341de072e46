"""Releases and rollback over real HTTP against the simulator: history, rollback by hand and
on failure, the concurrency rules, and GitHub's own concurrency group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.runner import BackgroundServer
from ghapp.simulator.model import Job, Step, Workflow
from ghapp.simulator.stack import Stack
from ghapp.web.app import create_app

ENVS = "/api/v1/repos/acme/shop/environments"


def broken_workflow() -> Workflow:
    """A second workflow of acme/shop whose deploy step fails."""
    return Workflow(
        file="broken.yml",
        name="Deploy",
        jobs=[
            Job(
                name="deploy",
                environment="production",
                steps=[Step("Deploy over SSH", command="./deploy.sh", fail=True)],
            )
        ],
    )


async def post(stack: Stack, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    """POST JSON as the orchestrator."""
    assert stack.session is not None
    async with stack.session.post(
        stack.base_url + path, json=body, headers={**stack.auth, **headers}
    ) as response:
        return response.status, await response.json()


async def deployed(stack: Stack, **body: Any) -> dict[str, Any]:
    """Deploy acme/shop and wait for the verdict's callback."""
    status, answer = await stack.deploy("acme/shop", **body)
    assert status == 202, answer
    return (await stack.receiver.wait_for(answer["id"])).deployment


def dispatches(stack: Stack) -> list[Any]:
    return [r for r in stack.sim.requests if r.path.endswith("/dispatches")]


@pytest.fixture
async def slow_stack(database_url: str) -> AsyncIterator[Stack]:
    """Runs that take a while (0.4 s a phase), so that deployments overlap."""
    stack = await Stack.start(database_url, step_delay=0.4)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    yield stack
    await stack.close()


async def test_two_releases_then_a_rollback(stack: Stack) -> None:
    first = await deployed(stack, inputs={"version": "v1"})
    second = await deployed(stack, inputs={"version": "v2"})
    status, body = await stack.get(ENVS)
    assert status == 200
    [production] = body["environments"]
    assert production["name"] == "production"
    assert production["current"]["deployment_id"] == second["id"]
    assert production["current"]["version"] == "v2"
    assert production["current"]["deployed_url"] == "https://shop.example.com"
    assert production["previous"]["deployment_id"] == first["id"]

    status, rollback = await post(stack, f"{ENVS}/production/rollback", {"to": None},
                                  **{"Idempotency-Key": "rb-1"})
    assert status == 202, rollback
    assert rollback["kind"] == "rollback" and rollback["rollback_of"] == first["id"]
    run = stack.sim.world.runs[rollback["run"]["id"]]
    # Third round: the correlation input goes with every dispatch the workflow declares it.
    # (`traceparent`: the template's optional input, empty with tracing off.)
    assert run.inputs == {"environment": "production", "version": "v1", "ghapp_id": rollback["id"],
                          "traceparent": ""}
    assert run.head_branch == "main" and run.workflow.file == "deploy.yml"
    # The same key again: the same deployment, nothing dispatched.
    count = len(dispatches(stack))
    status, again = await post(stack, f"{ENVS}/production/rollback", {"to": None},
                               **{"Idempotency-Key": "rb-1"})
    assert status == 200 and again["id"] == rollback["id"] and len(dispatches(stack)) == count

    callback = await stack.receiver.wait_for(rollback["id"])
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["kind"] == "rollback"
    status, listing = await stack.get(f"{ENVS}/production/releases?limit=10")
    assert [r["deployment_id"] for r in listing["releases"]] == [
        rollback["id"], second["id"], first["id"]
    ]
    assert [r["version"] for r in listing["releases"]] == ["v1", "v2", "v1"]
    _, body = await stack.get(ENVS)
    assert body["environments"][0]["current"]["deployment_id"] == rollback["id"]
    # After a rollback to the first release there is nothing before that one.
    assert body["environments"][0]["previous"] is None
    status, answer = await post(stack, f"{ENVS}/production/rollback", {"to": None})
    assert status == 409 and answer["error"] == "no_release"
    # By name, the second release can be put back.
    status, named = await post(stack, f"{ENVS}/production/rollback", {"to": second["id"]})
    assert status == 202 and named["rollback_of"] == second["id"]
    assert stack.sim.world.runs[named["run"]["id"]].inputs["version"] == "v2"


async def test_rollback_with_nothing_to_restore(stack: Stack) -> None:
    count = len(dispatches(stack))
    status, body = await post(stack, f"{ENVS}/never-deployed/rollback", {"to": None})
    assert status == 409 and body["error"] == "no_release"
    only = await deployed(stack)
    status, body = await post(stack, f"{ENVS}/production/rollback", {})
    assert status == 409
    # The current release is not an earlier one; an unknown id is no release at all.
    for to in (only["id"], "dep_unknown"):
        status, body = await post(stack, f"{ENVS}/production/rollback", {"to": to})
        assert status == 409, to
    assert len(dispatches(stack)) == count + 1
    status, body = await post(stack, f"{ENVS}/production/rollback", {"to": 5})
    assert status == 422
    status, body = await stack.get(f"{ENVS}/production/releases?limit=0")
    assert status == 422


async def test_a_failure_with_on_failure_rollback_restores_the_current_release(
    stack: Stack,
) -> None:
    stack.sim.world.repos["acme/shop"].add_workflow(broken_workflow())
    good = await deployed(stack, inputs={"version": "v1"})
    metadata = {"thread_id": "th_7"}
    status, bad = await stack.deploy(
        "acme/shop", workflow="broken.yml", inputs={"version": "v2"}, on_failure="rollback",
        metadata=metadata,
    )
    assert status == 202
    failed = (await stack.receiver.wait_for(bad["id"])).deployment
    verdict = failed["verdict"]
    assert verdict["status"] == "failure" and verdict["reason"] == "failure"
    rollback_id = verdict["rollback"]["deployment_id"]
    assert verdict["rollback"]["to"] == good["id"]
    restored = (await stack.receiver.wait_for(rollback_id)).deployment
    assert restored["kind"] == "rollback" and restored["rollback_of"] == good["id"]
    assert restored["metadata"] == metadata
    assert restored["verdict"]["status"] == "success"
    assert restored["callback"]["url"] == failed["callback"]["url"]
    # ghapp asked, not a token: no requested_by, and the audit trail names ghapp.
    assert restored["requested_by"] is None and failed["requested_by"] == "orchestrator"
    _, trail = await stack.get("/api/v1/audit?actor=ghapp")
    assert [(e["action"], e["target"]) for e in trail["entries"]] == [
        ("rollback.create", rollback_id)
    ]
    run = stack.sim.world.runs[restored["run"]["id"]]
    assert run.inputs == {"environment": "production", "version": "v1", "ghapp_id": rollback_id,
                          "traceparent": ""}
    # A deploy without on_failure reports only.
    status, plain = await stack.deploy("acme/shop", workflow="broken.yml")
    callback = await stack.receiver.wait_for(plain["id"])
    assert callback.deployment["verdict"]["rollback"] is None
    _, body = await stack.get(ENVS)
    assert body["environments"][0]["current"]["deployment_id"] == rollback_id
    assert stack.session is not None
    async with stack.session.get(stack.base_url + "/metrics") as response:
        metrics = await response.text()
    assert "ghapp_rollbacks_total 1.0" in metrics
    series = 'ghapp_deployment_duration_seconds_count{kind="rollback",status="success"}'
    assert f"{series} 1.0" in metrics


async def test_on_failure_rollback_without_a_release_only_reports(stack: Stack) -> None:
    stack.sim.world.repos["acme/shop"].add_workflow(broken_workflow())
    _, bad = await stack.deploy("acme/shop", workflow="broken.yml", on_failure="rollback")
    failed = (await stack.receiver.wait_for(bad["id"])).deployment
    assert failed["verdict"]["status"] == "failure" and failed["verdict"]["rollback"] is None
    assert len(dispatches(stack)) == 1


async def test_reject_and_cancel_previous(slow_stack: Stack) -> None:
    stack = slow_stack
    status, first = await stack.deploy("acme/shop")
    assert status == 202
    status, refused = await stack.deploy("acme/shop", concurrency="reject")
    assert status == 409
    assert refused == {
        "error": "conflict", "message": refused["message"], "deployment_id": first["id"]
    }
    assert len(dispatches(stack)) == 1
    # Another environment is free.
    status, staging = await stack.deploy(
        "acme/shop", concurrency="reject", inputs={"environment": "staging"}
    )
    assert status == 202
    status, newer = await stack.deploy("acme/shop", concurrency="cancel_previous")
    assert status == 202
    old = (await stack.receiver.wait_for(first["id"])).deployment
    assert old["verdict"]["status"] == "failure" and old["verdict"]["reason"] == "superseded"
    done = (await stack.receiver.wait_for(newer["id"])).deployment
    assert done["verdict"]["status"] == "success"
    # Finished: reject lets the next one through.
    await stack.receiver.wait_for(staging["id"])
    status, _ = await stack.deploy("acme/shop", concurrency="reject")
    assert status == 202


async def test_an_idempotency_repeat_is_answered_before_the_rule(slow_stack: Stack) -> None:
    stack = slow_stack
    key = {"Idempotency-Key": "same"}
    status, first = await stack.deploy("acme/shop", concurrency="reject", headers=key)
    assert status == 202
    status, again = await stack.deploy("acme/shop", concurrency="reject", headers=key)
    assert status == 200 and again["id"] == first["id"]


async def test_githubs_concurrency_group_supersedes_an_older_waiting_run(
    slow_stack: Stack,
) -> None:
    stack = slow_stack
    workflow = demo_workflows()["acme/shop"]
    workflow.concurrency = "deploy-${{ inputs.environment }}"
    stack.sim.world.repos["acme/shop"].add_workflow(workflow)
    ids = []
    for _ in range(3):
        status, body = await stack.deploy("acme/shop")
        assert status == 202
        ids.append(body["id"])
    running, waiting, newest = [
        (await stack.receiver.wait_for(i)).deployment for i in ids
    ]
    assert running["verdict"]["status"] == "success"
    assert waiting["verdict"]["reason"] == "superseded"
    assert newest["verdict"]["status"] == "success"
    runs = [stack.sim.world.runs[d["run"]["id"]] for d in (running, waiting, newest)]
    # The newest started only once the first had completed.
    assert runs[2].run_started >= runs[0].updated


async def test_twenty_racing_rejects_on_two_replicas_dispatch_once(postgres_url: str) -> None:
    stack = await Stack.start(postgres_url, step_delay=1.0)
    second = BackgroundServer(create_app(stack.settings, retry_base=stack.retry_base))
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        other_url = await second.start()
        assert stack.session is not None
        session = stack.session

        async def one(i: int) -> int:
            base = stack.base_url if i % 2 else other_url
            async with session.post(
                base + "/api/v1/deployments",
                json={"repository": "acme/shop", "concurrency": "reject"},
                headers=stack.auth,
            ) as response:
                return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(20)))
        assert sorted(statuses) == [202] + [409] * 19
        assert len(dispatches(stack)) == 1
    finally:
        await second.stop()
        await stack.close()
