"""The gate over real HTTP: the simulator holds runs that target an environment with ghapp's
rule, sends `deployment_protection_rule`, and ghapp answers through the callback URL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ghapp.runner import BackgroundServer
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.gate import request_payload
from ghapp.simulator.stack import Stack
from ghapp.web.app import create_app

REPO = "acme/gated"
SCHEMAS = Path("/work/shared/github-reference/webhook-schemas")


def gated_workflow() -> Workflow:
    job = Job(
        name="deploy",
        environment="${{ inputs.environment }}",
        environment_url="https://gated.example.com",
        steps=(Step("Run actions/checkout@v4"), Step("Deploy", command="./deploy.sh")),
    )
    return Workflow(file="deploy.yml", name="Deploy", jobs=[job])


async def gated_stack(database_url: str, **settings: Any) -> Stack:
    stack = await Stack.start(database_url, gate="on", **settings)
    stack.sim.add_repository(REPO, default_branch="main").add_workflow(gated_workflow())
    stack.sim.set_environment(REPO, "production", ghapp_rule=True)
    stack.sim.set_environment(REPO, "staging", ghapp_rule=True)
    return stack


@pytest.fixture
async def gated(database_url: str) -> AsyncIterator[Stack]:
    stack = await gated_stack(database_url)
    yield stack
    await stack.close()


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state of another server
            await asyncio.sleep(0.02)


def requests_of(stack: Stack) -> list[dict[str, Any]]:
    return [
        d.payload for d in stack.sim.deliveries if d.event == "deployment_protection_rule"
    ]


async def decisions(stack: Stack, **query: str) -> list[dict[str, Any]]:
    query_string = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = await stack.get(f"/api/v1/gate/decisions?{query_string}")
    assert status == 200, body
    return list(body["decisions"])


async def test_an_orchestrator_deploy_to_a_gated_environment_is_approved_and_completes(
    gated: Stack,
) -> None:
    status, body = await gated.deploy(REPO, inputs={"environment": "production"})
    assert status == 202, body
    callback = await gated.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["status"] == "success"
    run_id = callback.deployment["run"]["id"]
    [(answered_run, environment, state, comment)] = gated.sim.answers
    assert (answered_run, environment, state) == (run_id, "production", "approved")
    assert comment == f"ghapp: deployment {body['id']} (requested by the orchestrator)"
    # The request the simulator sent is GitHub's webhook as its schema describes it.
    [payload] = requests_of(gated)
    schema = json.loads((SCHEMAS / "deployment_protection_rule.requested.schema.json").read_text())
    jsonschema.validate(payload, schema)
    assert payload["deployment_callback_url"].endswith(
        f"/actions/runs/{run_id}/deployment_protection_rule"
    )
    [decision] = await decisions(gated)
    assert decision["origin"] == "ghapp" and decision["decision"] == "approved"
    assert decision["deployment_id"] == body["id"]
    assert decision["run"]["id"] == run_id


async def test_a_foreign_run_is_rejected_and_announced(gated: Stack) -> None:
    run = await gated.sim.start_foreign_run(
        REPO, "mallory", inputs={"environment": "production"}
    )
    await gated.sim.wait_for_run(run.id)
    assert run.conclusion == "failure"
    [(_, _, state, comment)] = gated.sim.answers
    assert state == "rejected" and "mallory" in comment and "POST /api/v1/deployments" in comment
    [decision] = await decisions(gated, origin="foreign")
    assert (decision["decision"], decision["actor"], decision["deployment_id"]) == (
        "rejected", "mallory", None,
    )
    callback = await gated.receiver.wait_for(decision["id"], event="gate.foreign")
    assert callback.headers["X-Ghapp-Event"] == "gate.foreign"
    assert callback.signature_ok
    assert callback.deployment == decision
    # The operator page shows it.
    assert gated.session is not None
    async with gated.session.get(gated.base_url + "/", headers=gated.auth) as response:
        page = await response.text()
    assert f'data-gate-decision="{decision["id"]}"' in page
    assert "mallory" in page and ">foreign<" in page


async def test_a_rerun_and_a_foreign_run_carrying_the_deployment_id_are_foreign(
    gated: Stack,
) -> None:
    _, body = await gated.deploy(REPO, inputs={"environment": "production"})
    callback = await gated.receiver.wait_for(body["id"])
    run_id = callback.deployment["run"]["id"]
    # "Re-run" by a person, and by the App's bot: a new attempt either way, so foreign.
    await gated.sim.rerun(run_id, actor="octocat")
    await gated.sim.wait_for_run(run_id)
    assert gated.sim.runs[run_id].conclusion == "failure"
    # Someone types the deployment's id into the "Run workflow" form.
    typed = await gated.sim.start_foreign_run(
        REPO, "octocat", inputs={"environment": "production", "ghapp_id": body["id"]}
    )
    await gated.sim.wait_for_run(typed.id)
    assert typed.conclusion == "failure"
    states = [answer[2] for answer in gated.sim.answers]
    assert states == ["approved", "rejected", "rejected"]
    found = await decisions(gated, origin="foreign")
    assert len(found) == 2
    assert {d["run"]["id"] for d in found} == {run_id, typed.id}


async def test_a_held_foreign_run_waits_until_the_api_approves_it(database_url: str) -> None:
    stack = await gated_stack(database_url, gate_foreign="hold")
    try:
        run = await stack.sim.start_foreign_run(
            REPO, "octocat", inputs={"environment": "staging"}
        )
        await wait_until(lambda: bool(stack.receiver.received))
        [decision] = await decisions(stack)
        assert decision["decision"] == "held"
        assert run.status == "waiting" and stack.sim.answers == []
        assert stack.session is not None
        url = f"{stack.base_url}/api/v1/gate/decisions/{decision['id']}/approve"
        async with stack.session.post(url, headers=stack.auth) as response:
            assert response.status == 200
            approved = await response.json()
        assert approved["decision"] == "approved"
        await stack.sim.wait_for_run(run.id)
        assert run.conclusion == "success"
        async with stack.session.post(url, headers=stack.auth) as response:
            assert response.status == 409  # no longer held
    finally:
        await stack.close()


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.yml"
    path.write_text(text)
    return path


def iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


async def test_a_freeze_rejects_at_request_time_and_nothing_is_dispatched(
    database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    ends = (now + timedelta(hours=2)).replace(microsecond=0)
    path = policy_file(tmp_path, f"""
- id: incident
  environments: ["prod*"]
  freeze: {{from: "{iso(now - timedelta(hours=1))}", to: "{iso(ends)}"}}
  reason: incident 42 in progress
""")
    stack = await gated_stack(database_url, gate_policy_path=str(path))
    try:
        status, body = await stack.deploy(REPO, inputs={"environment": "production"})
        assert status == 202, body
        assert body["state"] == "completed" and body["run"] is None
        verdict = body["verdict"]
        assert (verdict["status"], verdict["reason"]) == ("failure", "policy_rejected")
        cause = verdict["cause"]
        assert (cause["category"], cause["retryable"]) == ("policy", False)
        assert cause["retry_after"] == ends.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert "incident 42 in progress" in verdict["summary"]
        callback = await stack.receiver.wait_for(body["id"])
        assert callback.deployment["verdict"]["reason"] == "policy_rejected"
        assert stack.sim.runs == {}  # nothing dispatched
        status, preview = await stack.get(
            f"/api/v1/gate/preview?repository={REPO}&environment=production&ref=main"
        )
        assert status == 200
        assert preview == {"allowed": False, "policy": "incident",
                           "reason": "incident 42 in progress",
                           "retry_after": cause["retry_after"]}
        # Staging is not frozen.
        status, body = await stack.deploy(REPO, inputs={"environment": "staging"})
        callback = await stack.receiver.wait_for(body["id"])
        assert callback.deployment["verdict"]["status"] == "success"
    finally:
        await stack.close()


async def test_a_freeze_that_starts_while_a_deploy_queues_rejects_it_at_the_gate(
    database_url: str, tmp_path: Path
) -> None:
    # Far enough ahead that the stack starts and the request is answered before it, on a
    # loaded machine too.
    starts = datetime.now(UTC) + timedelta(seconds=4)
    path = policy_file(tmp_path, f"""
- id: late-freeze
  environments: ["production"]
  freeze: {{from: "{starts.isoformat()}", to: "{iso(starts + timedelta(hours=1))}"}}
  reason: the freeze began
""")
    stack = await gated_stack(database_url, gate_policy_path=str(path))
    try:
        stack.sim.faults.hold_webhooks = True
        status, body = await stack.deploy(REPO, inputs={"environment": "production"})
        assert status == 202 and body["state"] == "dispatched"
        await asyncio.sleep(max((starts - datetime.now(UTC)).total_seconds(), 0) + 0.1)
        stack.sim.faults.hold_webhooks = False
        await stack.sim.release_webhooks()
        callback = await stack.receiver.wait_for(body["id"])
        verdict = callback.deployment["verdict"]
        assert (verdict["reason"], verdict["cause"]["category"]) == ("policy_rejected", "policy")
        [(_, _, state, comment)] = stack.sim.answers
        assert state == "rejected" and "the freeze began" in comment
        run = stack.sim.runs[callback.deployment["run"]["id"]]
        await stack.sim.wait_for_run(run.id)
        assert run.conclusion == "failure"  # GitHub ended it without starting the job
        [decision] = await decisions(stack)
        assert (decision["origin"], decision["decision"]) == ("ghapp", "rejected")
    finally:
        await stack.close()


async def test_promotion_refuses_an_unpromoted_sha_then_allows_it_after_staging(
    database_url: str, tmp_path: Path
) -> None:
    path = policy_file(tmp_path, """
- id: staging-first
  environments: ["production"]
  promote_after: staging
  within: 1d
  reason: deploy to staging first
""")
    stack = await gated_stack(database_url, gate_policy_path=str(path))
    try:
        _, body = await stack.deploy(REPO, inputs={"environment": "production"})
        assert body["state"] == "completed", body
        assert body["verdict"]["reason"] == "policy_rejected"
        assert body["verdict"]["cause"]["retry_after"] is None
        assert stack.sim.runs == {}
        _, staged = await stack.deploy(REPO, inputs={"environment": "staging"})
        callback = await stack.receiver.wait_for(staged["id"])
        assert callback.deployment["verdict"]["status"] == "success"
        _, preview = await stack.get(
            f"/api/v1/gate/preview?repository={REPO}&environment=production&ref=main"
        )
        assert preview["allowed"] is True
        _, body = await stack.deploy(REPO, inputs={"environment": "production"})
        callback = await stack.receiver.wait_for(body["id"])
        assert callback.deployment["verdict"]["status"] == "success"
        assert [a[2] for a in stack.sim.answers] == ["approved", "approved"]
    finally:
        await stack.close()


async def test_a_gate_request_before_the_dispatch_answer_waits_for_it(gated: Stack) -> None:
    # No correlation input: only the dispatch's answer (held 1 s) names the run.
    workflow = gated_workflow()
    workflow.declares_ghapp_id = False
    workflow.inputs = None
    workflow.run_name = None
    workflow.__post_init__()
    gated.sim.repos[REPO].add_workflow(workflow)
    gated.sim.faults.dispatch_answer_delay = 1.0
    status, body = await gated.deploy(REPO, inputs={"environment": "production"})
    assert status == 202 and body["run"] is not None
    callback = await gated.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["status"] == "success", (
        callback.deployment["verdict"], await decisions(gated)
    )
    [decision] = await decisions(gated)
    assert (decision["origin"], decision["deployment_id"]) == ("ghapp", body["id"])


async def test_two_replicas_answer_one_request_once(postgres_url: str) -> None:
    stack = await gated_stack(postgres_url)
    second = BackgroundServer(create_app(stack.settings))
    try:
        second_url = await second.start()
        stack.sim.faults.hold_webhooks = True
        run = await stack.sim.start_foreign_run(
            REPO, "octocat", inputs={"environment": "production"}
        )
        dep = stack.sim.world.deployments[run.gate_deployments["production"]]
        body = json.dumps(request_payload(stack.sim.world, run, "production", dep)).encode()
        assert stack.session is not None

        async def deliver(base: str, guid: str) -> int:
            headers = {
                "X-GitHub-Event": "deployment_protection_rule",
                "X-GitHub-Delivery": guid,
                "X-Hub-Signature-256": stack.sim.sign(body),
                "Content-Type": "application/json",
            }
            assert stack.session is not None
            url = base + stack.settings.webhook_path
            async with stack.session.post(url, data=body, headers=headers) as response:
                return response.status

        statuses = await asyncio.gather(
            *(deliver(base, f"guid-{n}") for n, base in enumerate([stack.base_url, second_url] * 3))
        )
        assert set(statuses) == {200}
        assert [answer[2] for answer in stack.sim.answers] == ["rejected"]
        assert len(await decisions(stack)) == 1
    finally:
        await second.stop()
        await stack.close()


async def test_ghapp_down_when_github_asks_then_reconciliation_decides(
    database_url: str,
) -> None:
    stack = await gated_stack(database_url, poll_after=1)
    try:
        stack.sim.faults.hold_webhooks = True
        _, body = await stack.deploy(REPO, inputs={"environment": "production"})
        run = stack.sim.runs[body["run"]["id"]]
        await stack.stop_ghapp()
        stack.sim.faults.hold_webhooks = False
        await stack.sim.release_webhooks()  # to a server that is down: lost
        assert run.status == "waiting" and stack.sim.answers == []
        [lost] = [d for d in stack.sim.deliveries if d.event == "deployment_protection_rule"]
        assert lost.status is None and lost.error
        await stack.start_ghapp()
        callback = await stack.receiver.wait_for(body["id"], timeout=20)
        assert callback.deployment["verdict"]["status"] == "success"
        [(_, _, state, _)] = stack.sim.answers
        assert state == "approved"
        [decision] = await decisions(stack)
        assert (decision["origin"], decision["deployment_id"]) == ("ghapp", body["id"])
    finally:
        await stack.close()


async def stream_until(stack: Stack, deployment_id: str, wanted: Any) -> list[dict[str, Any]]:
    """The event stream's Deployments until one satisfies `wanted` (or the stream ends)."""
    assert stack.session is not None
    seen: list[dict[str, Any]] = []
    url = f"{stack.base_url}/api/v1/deployments/{deployment_id}/events"
    async with asyncio.timeout(15), stack.session.get(url, headers=stack.auth) as response:
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if wanted(seen[-1]):
                    break
    return seen


async def test_a_reviewer_is_awaited_on_the_stream_and_a_rejection_is_the_verdict(
    gated: Stack,
) -> None:
    gated.sim.set_environment(REPO, "production", ghapp_rule=True,
                              reviewers=["octocat", "acme/ops"])
    status, body = await gated.deploy(REPO, inputs={"environment": "production"})
    assert status == 202
    seen = await stream_until(
        gated, body["id"], lambda d: (d.get("progress") or {}).get("waiting") is not None
    )
    waiting = seen[-1]["progress"]["waiting"]
    assert (waiting["kind"], waiting["environment"]) == ("review", "production")
    assert waiting["reviewers"] == ["octocat", "acme/ops"] and waiting["since"]
    [requested] = [d.payload for d in gated.sim.deliveries if d.event == "deployment_review"]
    schema = json.loads((SCHEMAS / "deployment_review.requested.schema.json").read_text())
    jsonschema.validate(requested, schema)
    run_id = body["run"]["id"]
    await wait_until(lambda: bool(gated.sim.answers))  # the gate approved; people still wait
    await gated.sim.review(run_id, "rejected", "octocat", "not on a Friday")
    callback = await gated.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert (verdict["status"], verdict["reason"]) == ("failure", "review_rejected")
    assert "octocat" in verdict["summary"] and "not on a Friday" in verdict["summary"]
    assert verdict["cause"]["category"] == "policy" and not verdict["cause"]["retryable"]
    rejected = [d.payload for d in gated.sim.deliveries if d.action == "rejected"]
    schema = json.loads((SCHEMAS / "deployment_review.rejected.schema.json").read_text())
    jsonschema.validate(rejected[0], schema)


async def test_an_approving_reviewer_lets_the_deploy_complete(gated: Stack) -> None:
    gated.sim.set_environment(REPO, "staging", ghapp_rule=False, reviewers=["octocat"])
    _, body = await gated.deploy(REPO, inputs={"environment": "staging"})
    await stream_until(
        gated, body["id"], lambda d: (d.get("progress") or {}).get("waiting") is not None
    )
    # The deployment's page says who is awaited, where and since when.
    assert gated.session is not None
    async with gated.session.get(
        f"{gated.base_url}/deployments/{body['id']}/live", headers=gated.auth
    ) as response:
        assert response.status == 200
        html = await response.text()
    assert '<strong class="awaited">octocat</strong>' in html and "in staging since" in html
    await wait_until(lambda: gated.sim.runs[body["run"]["id"]].reviews)
    await gated.sim.review(body["run"]["id"], "approved", "octocat")
    callback = await gated.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["progress"]["waiting"] is None


async def test_notify_deployment_waiting_when_a_person_must_act(gated: Stack) -> None:
    gated.sim.set_environment(REPO, "staging", ghapp_rule=True, reviewers=["octocat"])
    _, body = await gated.deploy(
        REPO, inputs={"environment": "staging"}, notify=["deployment.waiting"]
    )
    callback = await gated.receiver.wait_for(body["id"], event="deployment.waiting")
    assert callback.signature_ok
    assert callback.headers["X-Ghapp-Delivery"].startswith("cbw_")
    waiting = callback.deployment["progress"]["waiting"]
    assert (waiting["kind"], waiting["reviewers"]) == ("review", ["octocat"])
    await wait_until(lambda: bool(gated.sim.answers))
    await gated.sim.review(body["run"]["id"], "approved", "octocat")
    done = await gated.receiver.wait_for(body["id"])
    assert done.deployment["verdict"]["status"] == "success"
    events = [c.event for c in gated.receiver.delivered() if c.deployment["id"] == body["id"]]
    assert events.count("deployment.waiting") == 1


async def test_a_lost_review_webhook_still_shows_who_is_awaited(database_url: str) -> None:
    stack = await gated_stack(database_url, poll_after=0.5)
    try:
        stack.sim.set_environment(REPO, "staging", ghapp_rule=True, reviewers=["acme/ops"])
        stack.sim.faults.drop_webhooks = {"deployment_review"}
        _, body = await stack.deploy(REPO, inputs={"environment": "staging"})
        seen = await stream_until(
            stack, body["id"], lambda d: (d.get("progress") or {}).get("waiting") is not None
        )
        waiting = seen[-1]["progress"]["waiting"]
        assert (waiting["environment"], waiting["reviewers"]) == ("staging", ["acme/ops"])
        # No review webhook reached ghapp (dropped, or not even sent yet): it read GitHub.
        reviews = [d for d in stack.sim.deliveries if d.event == "deployment_review"]
        assert all(d.dropped for d in reviews)
    finally:
        await stack.close()


async def test_a_lost_rejection_webhook_is_read_from_the_runs_approvals(gated: Stack) -> None:
    gated.sim.set_environment(REPO, "production", ghapp_rule=True, reviewers=["octocat"])
    gated.sim.faults.drop_webhooks = {"deployment_review.rejected"}
    _, body = await gated.deploy(REPO, inputs={"environment": "production"})
    await stream_until(
        gated, body["id"], lambda d: (d.get("progress") or {}).get("waiting") is not None
    )
    await wait_until(lambda: bool(gated.sim.answers))
    await gated.sim.review(body["run"]["id"], "rejected", "octocat", "wrong sha")
    callback = await gated.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert verdict["reason"] == "review_rejected", verdict
    assert "octocat" in verdict["summary"] and "wrong sha" in verdict["summary"]
    assert any(r.path.endswith("/approvals") for r in gated.sim.requests)


async def test_a_request_whose_run_github_cannot_show_is_deferred_not_rejected(
    gated: Stack,
) -> None:
    gated.sim.faults.hold_webhooks = True
    _, body = await gated.deploy(REPO, inputs={"environment": "production"})
    run = gated.sim.runs[body["run"]["id"]]
    dep = gated.sim.world.deployments[run.gate_deployments["production"]]
    payload = json.dumps(request_payload(gated.sim.world, run, "production", dep)).encode()
    assert gated.session is not None

    async def deliver(guid: str) -> tuple[int, dict[str, Any]]:
        headers = {"X-GitHub-Event": "deployment_protection_rule", "X-GitHub-Delivery": guid,
                   "X-Hub-Signature-256": gated.sim.sign(payload)}
        url = gated.base_url + gated.settings.webhook_path
        assert gated.session is not None
        async with gated.session.post(url, data=payload, headers=headers) as response:
            return response.status, await response.json()

    gated.sim.faults.server_errors_until = time.monotonic() + 600
    status, answer = await deliver("first")
    assert (status, answer["outcome"]) == (503, "gate_deferred")
    assert gated.sim.answers == [] and await decisions(gated) == []
    gated.sim.faults.server_errors_until = 0
    status, answer = await deliver("first")  # GitHub's redelivery keeps the guid
    assert (status, answer["outcome"]) == (200, "gate_approved")
    assert [a[2] for a in gated.sim.answers] == ["approved"]


async def test_a_lost_approval_webhook_clears_the_wait_once_the_run_starts(gated: Stack) -> None:
    gated.sim.set_environment(REPO, "staging", ghapp_rule=True, reviewers=["octocat"])
    gated.sim.faults.drop_webhooks = {"deployment_review.approved"}
    _, body = await gated.deploy(REPO, inputs={"environment": "staging"})
    await stream_until(
        gated, body["id"], lambda d: (d.get("progress") or {}).get("waiting") is not None
    )
    await wait_until(lambda: bool(gated.sim.answers))
    await gated.sim.review(body["run"]["id"], "approved", "octocat")
    callback = await gated.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["progress"]["waiting"] is None


async def test_an_override_passes_a_freeze_with_its_scope_and_its_reason_is_audited(
    database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    path = policy_file(tmp_path, f"""
- id: incident
  environments: ["production"]
  freeze: {{from: "{iso(now - timedelta(hours=1))}", to: "{iso(now + timedelta(hours=2))}"}}
  reason: incident 42 in progress
""")
    stack = await gated_stack(database_url, gate_policy_path=str(path))
    try:
        assert stack.session is not None
        admin = stack.settings.orchestrator_token
        scoped = {"repositories": [REPO], "environments": ["production"]}
        tokens = {}
        for name, scopes in (("ci", ["deploy"]), ("oncall", ["deploy", "override"])):
            async with stack.session.post(
                f"{stack.base_url}/api/v1/tokens", headers={"Authorization": f"Bearer {admin}"},
                json={"name": name, "scopes": scopes, **scoped},
            ) as response:
                assert response.status == 201
                tokens[name] = (await response.json())["token"]
        request = {"inputs": {"environment": "production"},
                   "override": {"reason": "hotfix for INC-42"}}
        status, body = await stack.deploy(
            REPO, headers={"Authorization": f"Bearer {tokens['ci']}"}, **request
        )
        assert (status, body.get("missing_scope")) == (403, "override")
        status, body = await stack.deploy(
            REPO, headers={"Authorization": f"Bearer {tokens['oncall']}"}, **request
        )
        assert status == 202 and body["state"] == "dispatched", body
        # GitHub asks the gate too: the override passes the freeze there as well.
        callback = await stack.receiver.wait_for(body["id"])
        assert callback.deployment["verdict"]["status"] == "success"
        [(_, _, state, _)] = stack.sim.answers
        assert state == "approved"
        # Without the override, the same request is refused by the freeze.
        status, refused = await stack.deploy(REPO, inputs={"environment": "production"})
        assert refused["verdict"]["reason"] == "policy_rejected"
        status, audit = await stack.get("/api/v1/audit?action=deployment.create")
        rows = {row["actor"]: row for row in audit["entries"] if row["target"] == body["id"]}
        assert rows["token:oncall"]["reason"] == "hotfix for INC-42"
    finally:
        await stack.close()
