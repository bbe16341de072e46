"""The delivery log says `early` of the webhooks of ghapp's own runs that came before GitHub's
answer to the dispatch was recorded (they are kept and applied once it is), not `not_ours`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ghapp.core.correlation import Wanted, awaited
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", delivery_log_days=3)
    # Without the correlation input, only the dispatch's answer names the run: its webhooks
    # that come first cannot be matched to the deployment and wait for that answer.
    workflow = Workflow(file="deploy.yml", name="Deploy", declares_ghapp_id=False,
                        jobs=[Job(name="deploy", steps=[Step("Deploy on the server")])])
    stack.sim.add_repository("acme/shop", default_branch="main").add_workflow(workflow)
    yield stack
    await stack.close()


async def _logged(stack: Stack, count: int) -> list[dict[str, Any]]:
    """The local delivery log once it holds `count` entries (it is written in batches)."""
    async with asyncio.timeout(20):
        while True:
            _, answer = await stack.get("/api/v1/deliveries?limit=100")
            if len(answer["deliveries"]) >= count:
                return list(answer["deliveries"])
            await asyncio.sleep(0.1)


async def test_early_webhooks_of_ghapps_run_are_labelled_early(
    stack: Stack, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulator answers the dispatch only after the run ended and all its webhooks went.
    stack.sim.faults.webhooks_before_answer = True
    status, body = await stack.deploy("acme/shop")
    assert status == 202
    callback = await stack.receiver.wait_for(body["id"], 20)
    assert callback.deployment["verdict"]["status"] == "success"  # applied once answered
    sent = [d for d in stack.sim.deliveries if d.event == "workflow_run"]
    logged = await _logged(stack, len(stack.sim.deliveries))
    runs = {d["delivery_id"]: d["outcome"] for d in logged if d["event"] == "workflow_run"}
    assert [runs[d.guid] for d in sent] == ["early", "early", "early"], runs
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", stack.settings.orchestrator_token or "")
    code, out, _ = await cli("deliveries", "local", "--url", stack.base_url, "--outcome", "early")
    assert code == 0
    assert sum(" early " in line for line in out.splitlines()) == 3, out


async def test_a_dispatched_run_no_deployment_waits_for_is_not_ours(stack: Stack) -> None:
    run = {
        "id": 999_000_001, "event": "workflow_dispatch", "status": "queued",
        "path": ".github/workflows/deploy.yml", "head_branch": "main", "display_title": "Deploy",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    payload = {"action": "requested", "workflow_run": run,
               "repository": {"full_name": "acme/shop"}}
    delivery = await stack.sim.webhooks.post("workflow_run", payload)
    assert delivery.status == 200 and json.loads(delivery.response_body)["outcome"] == "not_ours"


def test_awaited_means_same_workflow_and_ref_after_the_dispatch() -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    waiting = [Wanted("dep_1", "deploy.yml", "main", at, None)]
    run = {"event": "workflow_dispatch", "path": ".github/workflows/deploy.yml",
           "head_branch": "main", "created_at": "2026-01-01T12:00:01Z"}
    assert awaited(run, waiting)
    assert not awaited({**run, "head_branch": "release"}, waiting)
    assert not awaited({**run, "path": ".github/workflows/ci.yml"}, waiting)
    assert not awaited({**run, "created_at": "2026-01-01T11:00:00Z"}, waiting)  # older
    assert not awaited(run, [])
