"""`ghapp replay`: a saved payload, signed, to a running server, which accepts it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import Stack

# The `cli` fixture of conftest.py.
Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def stack(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Stack]:
    stack = await Stack.start(database_url)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WEBHOOK_SECRET", stack.settings.webhook_secret[0])
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", stack.settings.orchestrator_token or "")
    yield stack
    await stack.close()


def webhook_url(stack: Stack) -> str:
    return stack.base_url + stack.settings.webhook_path


def replayed_id(out: str) -> str:
    """The new X-GitHub-Delivery the command printed."""
    return out.split(" as delivery ", 1)[1].split()[0]


async def logged(stack: Stack, key: str) -> dict[str, Any]:
    status, detail = await stack.get(f"/api/v1/deliveries/{key}")
    assert status == 200
    return dict(detail)


async def test_a_saved_body_recovers_a_lost_verdict(stack: Stack, cli: Cli, tmp_path: Path) -> None:
    stack.sim.faults.drop_webhooks = {"workflow_run.completed"}
    _, body = await stack.deploy("acme/shop")
    await stack.sim.wait_for_run(body["run"]["id"])
    [lost] = [d for d in stack.sim.deliveries if d.dropped]
    saved = tmp_path / "completed.json"
    saved.write_bytes(lost.body)

    code, out, _ = await cli(
        "replay", str(saved), "--event", "workflow_run", "--url", webhook_url(stack)
    )
    assert code == 0, out
    assert "HTTP 200" in out and '"outcome":"handled"' in out.replace(" ", "")
    callback = await stack.receiver.wait_for(body["id"])
    assert callback.deployment["verdict"]["status"] == "success"
    # Signed like GitHub signs: the server's log judged the signature good.
    record = await logged(stack, replayed_id(out))
    assert record["signature"] == "ok" and record["body"].encode() == lost.body
    assert record["headers"]["user-agent"] == "ghapp-replay"


async def test_replay_by_local_id_resends_the_exact_body_under_a_new_delivery_id(
    stack: Stack, cli: Cli
) -> None:
    original = await stack.sim.send_webhook("ping", {"zen": "Design for failure.", "hook_id": 9})
    first = await logged(stack, original.guid)
    code, out, _ = await cli("replay", first["id"], "--url", webhook_url(stack))
    assert code == 0 and "HTTP 200" in out and "pong" in out
    new_guid = replayed_id(out)
    assert new_guid != original.guid
    again = await logged(stack, new_guid)
    assert again["body"] == first["body"] and again["event"] == "ping"
    assert again["outcome"] == "pong" and again["signature"] == "ok"


async def test_saved_delivery_records_carry_their_event(
    stack: Stack, cli: Cli, tmp_path: Path
) -> None:
    original = await stack.sim.send_webhook("ping", {"zen": "Approachable is better."})
    code, out, _ = await cli(
        "deliveries", "local", original.guid, "--json", "--url", stack.base_url
    )
    assert code == 0
    local_record = tmp_path / "local.json"
    local_record.write_text(out)
    github_record = tmp_path / "github.json"
    detail = {"request": {"headers": original.headers, "payload": original.payload}}
    github_record.write_text(json.dumps(detail))
    for saved in (local_record, github_record):
        code, out, _ = await cli("replay", str(saved), "--url", webhook_url(stack))
        assert code == 0, out
        assert "Replayed ping" in out and "HTTP 200" in out


async def test_refusals_are_one_line(
    stack: Stack,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    payload = tmp_path / "ping.json"
    payload.write_text('{"zen": "x"}')
    code, _, err = await cli("replay", str(payload), "--url", webhook_url(stack))
    assert code == 2 and err.startswith("ghapp: --event is needed")
    code, _, err = await cli("replay", "dl_missing", "--url", webhook_url(stack))
    assert code == 1 and "no such file, and no such delivery" in err
    monkeypatch.setenv("WEBHOOK_SECRET", "not-the-secret")
    code, out, _ = await cli("replay", str(payload), "--event", "ping", "--url", webhook_url(stack))
    assert code == 1 and "HTTP 401" in out
    monkeypatch.delenv("WEBHOOK_SECRET")
    code, _, err = await cli("replay", str(payload), "--event", "ping")
    assert code == 2 and err.startswith("ghapp: WEBHOOK_SECRET: required")
