"""The webhook endpoint's cheap filter: runs ghapp did not dispatch need no lookup or full parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import from_json

from ghapp.simulator.stack import Stack
from ghapp.web.webhook_payloads import RunHead, job_head, run_head


def test_head_of_every_reference_workflow_run_agrees_with_the_whole_payload(
    reference: Path,
) -> None:
    paths = sorted((reference / "webhooks").glob("workflow_run.*.json"))
    assert paths
    for path in paths:
        raw = path.read_bytes()
        whole = from_json(raw)
        run = whole["workflow_run"]
        dispatched = run["event"] == "workflow_dispatch"
        assert run_head(raw) == RunHead(
            action=whole["action"],
            run_id=run["id"] if dispatched else None,
            title=run.get("display_title") or "",
            created_at=run.get("created_at"),
        ), path.name


NOTHING = RunHead(None, None, "", None)


@pytest.mark.parametrize(
    ("body", "head"),
    [
        (
            b'{"action": "completed", "workflow_run": {"id": 7, "event": "push"}}',
            RunHead("completed", None, "", None),
        ),
        (
            b'{"workflow_run": {"event": "workflow_dispatch", "id": 7, "display_title": "x"}}',
            RunHead(None, 7, "x", None),
        ),
        # A boolean is no run id, a string neither, nor 2**70: the whole body is checked.
        (b'{"workflow_run": {"event": "workflow_dispatch", "id": true}}', None),
        (b'{"workflow_run": {"event": "workflow_dispatch", "id": "7"}}', None),
        (b'{"workflow_run": {"event": "workflow_dispatch", "id": 1180591620717411303424}}', None),
        (b'{"action": 3, "workflow_run": {"display_title": 5}}', NOTHING),
        # Other fields are not read here: a run found to be ghapp's has them checked later.
        (b'{"workflow_run": {"event": "push", "id": 7, "run_attempt": "x"}}', NOTHING),
        # Not the usual shape: the caller parses the whole body and decides.
        (b'{"workflow_run": null}', None),
        (b'{"workflow_run": [1]}', None),
        (b"{}", None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b'{"workflow_run": {"id": 7, "event": "push"}', None),
    ],
)
def test_head_reads_a_few_fields_or_says_look_closer(body: bytes, head: RunHead | None) -> None:
    assert run_head(body) == head


def _services(stack: Stack) -> Any:
    assert stack.server is not None
    return stack.server.server.config.app.state.services


async def _post(stack: Stack, event: str, body: bytes, delivery: str) -> tuple[int, Any]:
    assert stack.session is not None
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": stack.sim.sign(body),
        "Content-Type": "application/json",
    }
    url = stack.base_url + stack.settings.webhook_path
    async with stack.session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_foreign_runs_are_answered_without_a_lookup(stack: Stack) -> None:
    store = _services(stack).store
    lookups: list[int] = []
    by_run = store.by_run

    async def recording_by_run(run_id: int) -> Any:
        lookups.append(run_id)
        return await by_run(run_id)

    store.by_run = recording_by_run
    for n, event in enumerate(("push", "pull_request", "schedule")):
        body = json.dumps(
            {"action": "completed", "workflow_run": {"id": 900 + n, "event": event}}
        ).encode()
        assert await _post(stack, "workflow_run", body, f"f-{n}") == (200, {"outcome": "not_ours"})
    assert lookups == []
    # A dispatched run may be one of ghapp's: that one is looked up (and is not ours either).
    body = json.dumps(
        {"action": "completed", "workflow_run": {"id": 999, "event": "workflow_dispatch"}}
    ).encode()
    assert await _post(stack, "workflow_run", body, "f-9") == (200, {"outcome": "not_ours"})
    assert lookups == [999]
    # One of ghapp's own runs is looked up once, and handled (the simulator's own webhooks
    # about it are held back, so that only this delivery looks it up).
    stack.sim.faults.drop_webhooks = True
    stack.sim.auto = False
    status, deployment = await stack.deploy("acme/shop")
    assert status == 202
    run_id = deployment["run"]["id"]
    lookups.clear()
    body = json.dumps(
        {"action": "in_progress", "workflow_run": {"id": run_id, "event": "workflow_dispatch",
                                                   "status": "in_progress", "run_attempt": 1}}
    ).encode()
    status, answer = await _post(stack, "workflow_run", body, "f-10")
    assert (status, answer["outcome"]) == (200, "handled")
    assert answer["deployment_id"] == deployment["id"]
    assert lookups == [run_id]


async def test_odd_workflow_run_bodies_get_the_usual_answers(stack: Stack) -> None:
    assert await _post(stack, "workflow_run", b'{"workflow_run": null}', "o-1") == (
        200,
        {"outcome": "not_ours"},
    )
    status, answer = await _post(stack, "workflow_run", b"[1, 2]", "o-2")
    assert (status, answer["outcome"]) == (400, "bad_request")
    assert "not a JSON object" in answer["message"]
    status, answer = await _post(stack, "workflow_run", b'{"workflow_run": {', "o-3")
    assert (status, answer["outcome"]) == (400, "bad_request")
    assert "not JSON" in answer["message"]


async def test_foreign_runs_are_counted_by_action(stack: Stack) -> None:
    body = b'{"action": "in_progress", "workflow_run": {"id": 5, "event": "push"}}'
    assert (await _post(stack, "workflow_run", body, "m-1"))[0] == 200
    text = _services(stack).metrics.render()[0].decode()
    assert (
        'ghapp_webhooks_received_total{action="in_progress",event="workflow_run",'
        'outcome="not_ours"} 1.0'
    ) in text


async def test_a_run_whose_webhooks_beat_its_dispatch_answer_still_gets_its_verdict(
    stack: Stack,
) -> None:
    # Every webhook of the run reaches ghapp before the deployment is stored: each is noted as
    # an early run, and the newest is applied once the deployment exists (no poll needed:
    # POLL_AFTER is 60 s, far beyond this test's wait).
    stack.sim.faults.webhooks_before_answer = True
    status, body = await stack.deploy("acme/shop")
    assert status == 202 and body["state"] == "dispatched"
    callback = await stack.receiver.wait_for(body["id"], timeout=10)
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["run"]["id"] == body["run"]["id"]


@pytest.mark.parametrize(
    ("body", "head"),
    [
        (b'{"action": "completed", "workflow_job": {"id": 1, "run_id": 7}}', ("completed", 7)),
        (b'{"workflow_job": {"run_id": "7"}}', (None, None)),
        (b'{"workflow_job": {"run_id": true}, "action": 5}', (None, None)),
        (b'{"workflow_job": null}', None),
        (b"[1]", None),
        (b"not json", None),
    ],
)
def test_job_head_reads_the_run_id_or_says_look_closer(
    body: bytes, head: tuple[str | None, int | None] | None
) -> None:
    assert job_head(body) == head


async def test_jobs_of_runs_ghapp_does_not_watch_are_not_ours_after_one_lookup(
    stack: Stack,
) -> None:
    store = _services(stack).store
    lookups: list[int] = []
    by_run = store.by_run

    async def recording_by_run(run_id: int) -> Any:
        lookups.append(run_id)
        return await by_run(run_id)

    store.by_run = recording_by_run
    job = {"id": 5, "run_id": 4242, "status": "completed", "name": "build", "steps": []}
    body = json.dumps({"action": "completed", "workflow_job": job}).encode()
    assert await _post(stack, "workflow_job", body, "j-1") == (200, {"outcome": "not_ours"})
    assert lookups == [4242]
    # A job of ghapp's own run is handled; one with impossible field types is refused (400).
    stack.sim.faults.drop_webhooks = True
    stack.sim.auto = False
    _, deployment = await stack.deploy("acme/shop")
    run_id = deployment["run"]["id"]
    steps = [{"number": 1, "name": "Set up job", "status": "in_progress", "conclusion": None}]
    job = {"id": 6, "run_id": run_id, "run_attempt": 1, "status": "in_progress",
           "name": "deploy", "steps": steps}
    body = json.dumps({"action": "in_progress", "workflow_job": job}).encode()
    status, answer = await _post(stack, "workflow_job", body, "j-2")
    assert (status, answer["outcome"], answer["state"]) == (200, "handled", "in_progress")
    _, now = await stack.get(f"/api/v1/deployments/{deployment['id']}")
    assert now["progress"]["steps_total"] == 1 and now["progress"]["jobs"][0]["id"] == 6
    job["steps"] = "many"
    body = json.dumps({"action": "in_progress", "workflow_job": job}).encode()
    status, answer = await _post(stack, "workflow_job", body, "j-3")
    assert (status, answer["outcome"]) == (400, "bad_request")
