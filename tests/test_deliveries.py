"""`ghapp deliveries ...` against the simulator's hook-deliveries API, with ghapp answering."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.github.client import GitHubClient
from ghapp.github.deliveries import AutoRedeliverer, failed_guids, parse_since
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
    # The commands read the App's credentials from the environment (no stray .env here).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_ID", str(stack.sim.app_id))
    monkeypatch.setenv("PRIVATE_KEY", stack.sim.private_key_pem)
    monkeypatch.setenv("GITHUB_API_URL", stack.sim.api_url)
    yield stack
    await stack.close()


async def completed_with_dropped_webhook(stack: Stack, repository: str) -> tuple[str, str]:
    """Deploy while `workflow_run.completed` is dropped; (deployment id, the dropped guid)."""
    stack.sim.faults.drop_webhooks = {"workflow_run.completed"}
    status, body = await stack.deploy(repository)
    assert status == 202
    await stack.sim.wait_for_run(body["run"]["id"])
    stack.sim.faults.drop_webhooks = False
    [dropped] = [
        d
        for d in stack.sim.deliveries
        if d.dropped and d.payload.get("workflow_run", {}).get("id") == body["run"]["id"]
    ]
    return str(body["id"]), dropped.guid


def redelivered_guids(stack: Stack) -> list[str]:
    return [d.guid for d in stack.sim.deliveries if d.redelivery]


async def test_redeliver_failed_sends_exactly_the_failed_guids_once(stack: Stack, cli: Cli) -> None:
    shop, shop_guid = await completed_with_dropped_webhook(stack, "acme/shop")
    api, api_guid = await completed_with_dropped_webhook(stack, "acme/api")
    _, body = await stack.deploy("acme/shop")  # one whose webhooks all arrived
    await stack.sim.wait_for_run(body["run"]["id"])
    _, before = await stack.get(f"/api/v1/deployments/{shop}")
    assert before["state"] != "completed"

    code, out, _ = await cli("deliveries", "redeliver-failed", "--dry-run")
    assert code == 0
    assert shop_guid in out and api_guid in out and "would redeliver 2" in out
    assert stack.sim.api_calls(method="POST", path="/attempts") == 0

    code, out, _ = await cli("deliveries", "redeliver-failed", "--since", "1h")
    assert code == 0, out
    assert out.strip().splitlines()[-1].endswith("redelivered 2")
    await stack.sim.drain()
    assert sorted(redelivered_guids(stack)) == sorted([shop_guid, api_guid])
    assert all(d.ok for d in stack.sim.deliveries if d.redelivery)
    # What a user notices: the verdicts arrive through the redelivered webhooks.
    await stack.receiver.wait_for(shop)
    await stack.receiver.wait_for(api)

    # Safe from cron: a second run finds nothing left to send.
    code, out, _ = await cli("deliveries", "redeliver-failed")
    assert code == 0 and "0 failed guid(s)" in out and "redelivered 0" in out
    await stack.sim.drain()
    assert len(redelivered_guids(stack)) == 2


async def test_a_guid_whose_redelivery_failed_is_sent_again(stack: Stack, cli: Cli) -> None:
    _, guid = await completed_with_dropped_webhook(stack, "acme/shop")
    stack.sim.faults.drop_webhooks = True  # the server stays unreachable
    for expected in (1, 2):
        code, out, _ = await cli("deliveries", "redeliver-failed", "--json")
        assert code == 0
        report = json.loads(out)
        assert [f["guid"] for f in report["redelivered"]] == [guid]
        await stack.sim.drain()
        assert redelivered_guids(stack) == [guid] * expected


async def test_list_failed_show_and_redeliver(stack: Stack, cli: Cli) -> None:
    _, guid = await completed_with_dropped_webhook(stack, "acme/shop")
    code, out, _ = await cli("deliveries", "list", "--failed", "--json")
    assert code == 0
    [failed] = json.loads(out)
    assert failed["guid"] == guid
    assert (failed["event"], failed["action"]) == ("workflow_run", "completed")
    assert failed["last_status_code"] == 0 and failed["attempts"] == 1
    assert set(failed) >= {"guid", "event", "action", "last_status", "delivered_at"}

    code, out, _ = await cli("deliveries", "list", "--failed")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["GUID", "EVENT", "ACTION", "LAST"]
    assert lines[1].startswith(guid) and "failed to connect to host" in lines[1]

    code, out, _ = await cli("deliveries", "list", "--event", "workflow_run")
    assert code == 0
    rows = out.splitlines()[1:-1]
    assert rows and all("workflow_run" in row for row in rows)
    # The STATUS column (ID, TIME, GUID, EVENT, ACTION come first): a GUID may contain "200".
    handled = next(row for row in rows if row.split()[5] == "200")
    delivery_id = handled.split()[0]

    code, out, _ = await cli("deliveries", "show", delivery_id)
    assert code == 0
    assert "X-GitHub-Event: workflow_run" in out and "Request payload:" in out
    assert '"workflow_run": {' in out
    assert "Response body:" in out and '"outcome"' in out

    failed_id = str(failed["redeliver_id"])
    code, out, _ = await cli("deliveries", "redeliver", failed_id)
    assert code == 0 and "requested" in out
    await stack.sim.drain()
    assert redelivered_guids(stack) == [guid]

    code, _, err = await cli("deliveries", "show", "999")
    assert code == 1 and err.startswith("ghapp: GitHub answered 404")


async def test_auto_redeliver_runs_in_the_server(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first pass comes once the run below is over (it takes milliseconds).
    monkeypatch.setattr(AutoRedeliverer, "start_delay", 1.5)
    # A later pass too, for a loaded machine where the run outlasts the first pass's delay.
    monkeypatch.setattr(AutoRedeliverer, "interval", 2.0)
    monkeypatch.setattr(AutoRedeliverer, "settle", 0.0)
    stack = await Stack.start(database_url, auto_redeliver=True)
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        deployment, guid = await completed_with_dropped_webhook(stack, "acme/shop")
        callback = await stack.receiver.wait_for(deployment)
        assert callback.deployment["verdict"]["status"] == "success"
        await stack.sim.drain()
        # The dropped delivery was asked for again, once (on a loaded machine a later pass may
        # also redeliver another delivery GitHub saw fail, which is its job).
        redelivered = redelivered_guids(stack)
        assert guid in redelivered and len(redelivered) == len(set(redelivered))
    finally:
        await stack.close()


async def test_auto_redeliver_gives_up_on_a_guid_after_a_few_tries(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AutoRedeliverer, "settle", 0.0)
    _, guid = await completed_with_dropped_webhook(stack, "acme/shop")
    stack.sim.faults.drop_webhooks = True
    async with aiohttp.ClientSession() as session:
        github = GitHubClient(
            session,
            app_id=str(stack.sim.app_id),
            private_key=stack.sim.private_key_pem,
            api_url=stack.sim.api_url,
        )
        auto = AutoRedeliverer(github)
        # A redelivery GitHub has not attempted yet is not asked for twice.
        stack.sim.faults.hold_webhooks = True
        await auto.run_pass()
        report = await auto.run_pass()
        assert [f.guid for f in report.held] == [guid] and report.redelivered == []
        stack.sim.faults.hold_webhooks = False
        await stack.sim.release_webhooks()
        for _ in range(AutoRedeliverer.max_per_guid + 1):
            auto.last_pass = None  # keep the first window, so every pass sees the guid
            report = await auto.run_pass()
            await stack.sim.drain()
    assert redelivered_guids(stack) == [guid] * AutoRedeliverer.max_per_guid
    assert [f.guid for f in report.held] == [guid]


# --- the pure rule --------------------------------------------------------------------------


def attempt(n: int, guid: str, minutes_ago: int, code: int, **extra: Any) -> dict[str, Any]:
    when = NOW - timedelta(minutes=minutes_ago)
    return {
        "id": n,
        "guid": guid,
        "delivered_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status_code": code,
        "status": "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}",
        "event": "workflow_run",
        "action": "completed",
        "redelivery": False,
        **extra,
    }


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_failed_guids_groups_by_guid_within_the_window() -> None:
    deliveries = [
        attempt(1, "a", 50, 500),
        attempt(2, "a", 40, 502, redelivery=True),  # still failing: the newest attempt is kept
        attempt(3, "b", 30, 0),
        attempt(4, "b", 20, 200, redelivery=True),  # recovered
        attempt(5, "c", 10, 202),
        attempt(6, "d", 600, 500),  # outside the window
        attempt(7, "e", 5, 404, action=None, event="ping"),
    ]
    failed = failed_guids(deliveries, NOW - timedelta(hours=1))
    assert [(f.guid, f.redeliver_id, f.attempts, f.last_status_code) for f in failed] == [
        ("e", 7, 1, 404),
        ("a", 2, 2, 502),
    ]
    assert failed[1].as_json()["delivered_at"] == "2026-05-01T11:20:00Z"
    assert failed[0].event == "ping" and failed[0].action is None


def test_parse_since() -> None:
    assert parse_since("30m") == timedelta(minutes=30)
    assert parse_since("6h") == timedelta(hours=6)
    assert parse_since("2d") == timedelta(days=2)
    for bad in ("", "6", "h", "-1h", "1y"):
        with pytest.raises(ValueError):
            parse_since(bad)


async def test_bad_since_and_missing_credentials_are_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APP_ID", raising=False)
    code, _, err = await cli("deliveries", "list")
    assert code == 2 and err == "ghapp: APP_ID: required (the GitHub App's id)\n"
    code, _, err = await cli("deliveries", "list", "--since", "soon")
    assert code == 2 and err == "ghapp: --since: 'soon' is not a duration like 30m, 6h or 2d\n"
    monkeypatch.setenv("APP_ID", "1")
    monkeypatch.setenv("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----\nnope\n")
    code, _, err = await cli("deliveries", "list")
    assert code == 2 and err.startswith("ghapp: PRIVATE_KEY: the key does not load")
