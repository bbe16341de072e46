"""`ghapp gate`: environments without ghapp's rule, and held decisions from the command line,
against the simulator and a running ghapp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from conftest import Cli
from test_gate import REPO, decisions, gated_stack

from ghapp.cli.deploy import summary
from ghapp.client import Client
from ghapp.core.models import Deployment
from ghapp.simulator.sandbox import Sandbox
from ghapp.simulator.stack import Stack


@pytest.fixture
async def held(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Stack]:
    stack = await gated_stack(database_url, gate_foreign="hold")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_ID", str(stack.sim.app_id))
    monkeypatch.setenv("PRIVATE_KEY", stack.sim.private_key_pem)
    monkeypatch.setenv("GITHUB_API_URL", stack.sim.api_url)
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", stack.settings.orchestrator_token or "")
    yield stack
    await stack.close()


async def test_gate_check_names_each_environment_without_ghapps_rule(
    held: Stack, cli: Cli
) -> None:
    held.sim.set_environment(REPO, "qa", ghapp_rule=False, reviewers=["octocat", "acme/ops"],
                             wait_timer=5)
    code, out, err = await cli("gate", "check", REPO)
    assert code == 1
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {"production", "qa", "staging"}
    assert "yes" in lines["production"] and "NO" in lines["qa"]
    assert "octocat, acme/ops" in lines["qa"] and "5 min" in lines["qa"]
    assert err.strip().splitlines() == [
        f"ghapp: {REPO}: environment qa deploys without ghapp's rule"
    ]
    held.sim.set_environment(REPO, "qa", ghapp_rule=True)
    code, _, err = await cli("gate", "check", REPO)
    assert (code, err) == (0, "")
    code, _, err = await cli("gate", "check", "not a repo")
    assert code == 2 and "OWNER/REPO" in err


async def test_held_decisions_are_listed_and_rejected_from_the_command_line(
    held: Stack, cli: Cli
) -> None:
    run = await held.sim.start_foreign_run(REPO, "octocat", inputs={"environment": "staging"})
    async with asyncio.timeout(10):
        while not await decisions(held):  # noqa: ASYNC110 - polling another server
            await asyncio.sleep(0.05)
    url = held.base_url
    code, out, _ = await cli("gate", "decisions", "--held", "--url", url)
    assert code == 0
    [row] = out.splitlines()[1:]
    decision_id = row.split()[0]
    assert "held" in row and "octocat" in row and "foreign" in row
    code, out, _ = await cli("gate", "reject", decision_id, "--url", url)
    assert code == 0 and f"{decision_id}: rejected" in out
    await held.sim.wait_for_run(run.id)
    assert run.conclusion == "failure"
    code, out, _ = await cli("gate", "decisions", "--held", "--url", url)
    assert (code, out) == (0, "no decisions\n")
    code, _, err = await cli("gate", "approve", decision_id, "--url", url)
    assert code == 1 and "not held" in err


async def test_the_sandbox_gates_an_environment_and_starts_a_foreign_run() -> None:
    sandbox = await Sandbox.start(gate="on")
    try:
        async with aiohttp.ClientSession() as session:
            scenario = {"after_seconds": 0.2,
                        "environments": {"production": {"ghapp_rule": True}}}
            api = sandbox.github_api_url
            async with session.put(f"{api}/sandbox/scenarios/acme/locked", json=scenario) as r:
                assert r.status == 200
            async with Client(sandbox.url, sandbox.token) as client:
                mine = await client.deploy("acme/locked")
                mine = await client.wait(mine.id, interval=0.1, timeout=30)
            assert mine.verdict is not None and mine.verdict.status == "success"
            body = {"environment": "production", "actor": "mallory"}
            async with session.post(f"{api}/sandbox/runs/acme/locked", json=body) as r:
                assert r.status == 201
                started = await r.json()
            run = await sandbox.stack.sim.wait_for_run(started["run_id"], timeout=10)
            assert run.conclusion == "failure"
            async with session.post(f"{api}/sandbox/runs/acme/locked", json=[1]) as r:
                assert r.status == 422
        states = [answer[2] for answer in sandbox.stack.sim.answers]
        assert states == ["approved", "rejected"]
    finally:
        await sandbox.close()


def test_watch_shows_who_is_awaited() -> None:
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    deployment = Deployment.model_validate({
        "id": "dep_1", "repository": REPO, "workflow": "deploy.yml", "ref": "main",
        "state": "dispatched", "callback": {"url": None}, "created_at": now, "updated_at": now,
        "progress": {"waiting": {"kind": "review", "environment": "production",
                                 "reviewers": ["octocat", "acme/ops"],
                                 "since": now - timedelta(seconds=75)}},
    })
    line = summary(deployment, now)
    assert "waiting for octocat, acme/ops (production) for 1:15" in line
