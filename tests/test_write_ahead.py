"""Record first, then dispatch: every crash point of a deploy request ends in one verdict and
never a second dispatch. Real `ghapp serve` processes, SIGKILLed, on both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.work.launch import KILL_AFTER_RECORD

KEY = {"Idempotency-Key": "orchestrator-retry-1"}


def dispatches(stack: Stack) -> int:
    """Dispatch requests the simulator received, whatever it answered."""
    return stack.sim.api_calls(method="POST", path="/dispatches")


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Stack, ProcessServer]]:
    """The simulator and the receiver in this process, ghapp as a child process to kill."""
    stack = await Stack.start(database_url, retry_base=0.05, poll_after=1, run_lookup_timeout=8)
    await stack.stop_ghapp()
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    server = ProcessServer(stack.settings, str(tmp_path / "serve.log"))
    try:
        yield stack, server
    finally:
        await server.kill()
        await stack.close()


async def start(stack: Stack, server: ProcessServer) -> None:
    stack.base_url = await server.start()
    stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path


async def retry_until_answered(stack: Stack, *, within: float = 60.0) -> tuple[int, Any]:
    """The orchestrator sending its request again with the same key, as clients do: a
    `409 in_progress` means the first request is still being answered."""
    deadline = time.monotonic() + within
    while True:
        status, body = await stack.deploy("acme/shop", headers=KEY)
        if status != 409 or body.get("error") != "in_progress":
            return status, body
        assert time.monotonic() < deadline, "still in progress"
        await asyncio.sleep(1.0)


async def first_dispatch(stack: Stack) -> None:
    """Wait until the simulator has the dispatch request."""
    async with asyncio.timeout(10):
        while dispatches(stack) == 0:  # noqa: ASYNC110 - the simulator signals nothing
            await asyncio.sleep(0.02)


async def listed(stack: Stack) -> list[dict[str, Any]]:
    status, body = await stack.get("/api/v1/deployments")
    assert status == 200
    return list(body["deployments"])


@pytest.mark.parametrize("killed_after", [1.0, 6.0], ids=["before-the-202", "after-the-202"])
async def test_killed_while_github_holds_the_answer_the_retry_dispatches_nothing(
    served: tuple[Stack, ProcessServer], killed_after: float
) -> None:
    stack, server = served
    await start(stack, server)
    # GitHub takes the dispatch (its run starts) and holds the answer.
    stack.sim.faults.dispatch_answer_delay = 3600.0
    first = asyncio.create_task(stack.deploy("acme/shop", headers=KEY))
    await first_dispatch(stack)
    await asyncio.sleep(killed_after)
    await server.kill()
    with pytest.raises(aiohttp.ClientError):
        status, body = await first
        # After the 202 (at 4 s) the answer came before the kill: that is fine too.
        assert killed_after > 5 and status == 202, body
        raise aiohttp.ClientConnectionError("answered")
    await start(stack, server)
    status, body = await retry_until_answered(stack)
    assert status == 200, body
    [only] = await listed(stack)
    assert only["id"] == body["id"] and body["state"] in ("dispatched", "in_progress", "completed")
    callback = await stack.receiver.wait_for(body["id"], timeout=60)
    [run_id] = stack.sim.runs
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["run"]["id"] == run_id
    assert dispatches(stack) == 1 and len(stack.sim.runs) == 1
    await asyncio.sleep(1.0)
    assert [c.deployment["id"] for c in stack.receiver.delivered()] == [body["id"]]


async def test_killed_after_the_commit_before_the_dispatch(
    served: tuple[Stack, ProcessServer],
) -> None:
    stack, server = served
    # Test-only hook: this process SIGKILLs itself right after committing the record.
    server.env[KILL_AFTER_RECORD] = "1"
    await start(stack, server)
    with pytest.raises(aiohttp.ClientError):
        await stack.deploy("acme/shop", headers=KEY)
    assert server.process is not None
    await server.process.wait()
    assert dispatches(stack) == 0
    del server.env[KILL_AFTER_RECORD]
    await start(stack, server)
    # The record exists, nothing was sent: the retry answers it and never dispatches.
    status, body = await retry_until_answered(stack)
    assert status == 200 and body["state"] in ("dispatched", "completed"), body
    assert body["run"] is None
    callback = await stack.receiver.wait_for(body["id"], timeout=60)
    verdict = callback.deployment["verdict"]
    assert verdict["reason"] == "run_not_found", verdict
    assert "ghapp stopped before it recorded GitHub's answer" in verdict["summary"]
    assert verdict["cause"]["category"] == "transient" and verdict["cause"]["retryable"]
    status, again = await stack.deploy("acme/shop", headers=KEY)
    assert status == 200 and again["id"] == body["id"]
    assert dispatches(stack) == 0 and not stack.sim.runs
    assert [d["id"] for d in await listed(stack)] == [body["id"]]


async def test_a_5xx_after_github_created_the_run_finds_the_run_by_its_title(
    served: tuple[Stack, ProcessServer],
) -> None:
    stack, server = served
    await start(stack, server)
    stack.sim.faults.error_after_dispatch = 1
    status, body = await stack.deploy("acme/shop", headers=KEY)
    assert status == 202 and body["state"] == "dispatched" and body["run"] is None, body
    callback = await stack.receiver.wait_for(body["id"], timeout=60)
    [run_id] = stack.sim.runs
    assert body["id"] in stack.sim.runs[run_id].display_title
    assert callback.deployment["verdict"]["status"] == "success"
    assert callback.deployment["run"]["id"] == run_id
    status, again = await stack.deploy("acme/shop", headers=KEY)
    assert status == 200 and again["id"] == body["id"]
    assert dispatches(stack) == 1


async def test_a_repeat_while_the_first_is_answered_is_409_in_progress(
    served: tuple[Stack, ProcessServer],
) -> None:
    stack, server = served
    await start(stack, server)
    stack.sim.faults.dispatch_answer_delay = 2.0
    first = asyncio.create_task(stack.deploy("acme/shop", headers=KEY))
    await first_dispatch(stack)
    status, body = await stack.deploy("acme/shop", headers=KEY)
    assert status == 409 and body["error"] == "in_progress", body
    status, answered = await first
    assert status == 202
    status, again = await stack.deploy("acme/shop", headers=KEY)
    assert status == 200 and again["id"] == answered["id"]
    assert dispatches(stack) == 1
