"""The delivery log written off the webhook's path in batches: every delivery of a burst is kept,
and a crash loses at most the last batch of log rows, never a deployment's state."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.store import SqlStore
from ghapp.store.schema import delivery_log
from ghapp.work.delivery_entries import HEADERS_CUT

FOREIGN_RUN = 8_200_000_000
Cli = Callable[..., Awaitable[tuple[int, str, str]]]


async def post(
    stack: Stack, event: str, body: bytes, *, good: bool = True, filler: int = 0
) -> tuple[int, str]:
    """POST one delivery as GitHub would (or with a wrong signature); (status, its guid)."""
    assert stack.session is not None
    secret = stack.settings.webhook_secret[0].encode()
    digest = hmac.new(secret if good else b"not the secret", body, hashlib.sha256).hexdigest()
    guid = str(uuid.uuid4())
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid,
        "X-Hub-Signature-256": "sha256=" + digest,
        "Content-Type": "application/json",
    }
    if filler:
        headers["X-Filler"] = "f" * filler
    url = stack.base_url + stack.settings.webhook_path
    async with stack.session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status, guid


def foreign_job(n: int) -> bytes:
    """A `workflow_job` delivery of a run ghapp did not dispatch."""
    job = {"id": FOREIGN_RUN + n, "run_id": FOREIGN_RUN + n, "status": "completed",
           "conclusion": "success", "name": f"test {n}", "steps": []}
    return json.dumps({"action": "completed", "workflow_job": job}).encode()


async def logged(database_url: str) -> dict[str, tuple[str, int]]:
    """What the table holds, read directly (the API would flush the buffer first):
    {X-GitHub-Delivery: (outcome, status)}."""
    store = SqlStore(database_url)
    await store.open()
    try:
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(delivery_log.c.delivery_id, delivery_log.c.outcome,
                           delivery_log.c.status)
                )
            ).all()
    finally:
        await store.close()
    return {row.delivery_id: (row.outcome, row.status) for row in rows}


async def written_by_the_writer(database_url: str, guids: set[str]) -> dict[str, tuple[str, int]]:
    """Wait (up to 10 s) until the background writer has written every one of `guids`."""
    async with asyncio.timeout(10):
        while True:
            found = await logged(database_url)
            if guids <= set(found):
                return found
            await asyncio.sleep(0.05)


async def test_every_delivery_of_a_burst_is_logged_with_its_outcome(
    stack: Stack, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sends = [post(stack, "workflow_job", foreign_job(n)) for n in range(40)]
    sends += [post(stack, "workflow_job", foreign_job(n), good=False) for n in range(40, 45)]
    sends += [post(stack, "workflow_job", foreign_job(n), filler=9000) for n in range(45, 48)]
    answers = await asyncio.gather(*sends)
    assert [status for status, _ in answers] == [200] * 40 + [401] * 5 + [200] * 3
    guids = [guid for _, guid in answers]
    # Nobody asked the API: the writer wrote them all by itself, each with its outcome.
    found = await written_by_the_writer(stack.settings.database_url, set(guids))
    assert [found[g] for g in guids] == (
        [("not_ours", 200)] * 40 + [("bad_signature", 401)] * 5 + [("not_ours", 200)] * 3
    )
    status, body = await stack.get("/api/v1/deliveries?limit=100")
    assert status == 200
    assert {d["delivery_id"] for d in body["deliveries"]} >= set(guids) and body["dropped"] == 0
    status, detail = await stack.get(f"/api/v1/deliveries/{guids[-1]}")
    assert status == 200 and detail["truncated"] is True and detail["body"] == ""
    headers = detail["headers"]
    assert "x-filler" not in headers and headers[HEADERS_CUT].endswith("kept")
    assert headers["x-hub-signature-256"] == "<redacted>"
    assert headers["x-github-delivery"] == guids[-1]
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", stack.settings.orchestrator_token or "")
    monkeypatch.chdir(tmp_path)
    code, out, _err = await cli("deliveries", "local", "--url", stack.base_url, "--limit", "100")
    assert code == 0
    assert all(guid in out for guid in guids)
    assert out.count("not_ours") >= 43 and out.count("bad_signature") >= 5


async def test_a_crash_loses_at_most_the_last_batch_and_no_deployment_state(
    database_url: str, tmp_path: Path
) -> None:
    stack = await Stack.start(database_url)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    await stack.stop_ghapp()  # a real `ghapp serve` instead, to SIGKILL
    server = ProcessServer(stack.settings, log_path=str(tmp_path / "ghapp.log"))
    try:
        stack.base_url = await server.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        stack.sim.auto = False  # the run waits for the test
        status, deployment = await stack.deploy("acme/shop")
        assert status == 202
        earlier = await asyncio.gather(
            *(post(stack, "workflow_job", foreign_job(n)) for n in range(30))
        )
        assert {status for status, _ in earlier} == {200}
        await written_by_the_writer(database_url, {guid for _, guid in earlier})
        # The run starts (its webhooks answered), and a last burst comes just before the crash.
        await stack.sim.advance(deployment["run"]["id"])
        last = await asyncio.gather(
            *(post(stack, "workflow_job", foreign_job(n)) for n in range(30, 60))
        )
        assert {status for status, _ in last} == {200}
        await server.kill()
        found = await logged(database_url)
        # Everything the writer had written survives; only the last interval's rows may not.
        assert {guid for _, guid in earlier} <= set(found)
        assert all(found[guid] == ("not_ours", 200) for _, guid in last if guid in found)
        # The deployment's state was written before its webhook was answered.
        store = SqlStore(database_url)
        await store.open()
        try:
            record = await store.get(deployment["id"])
        finally:
            await store.close()
        assert record is not None and record.state == "in_progress"
        assert record.run_started_at is not None
        # A new process logs again and lists what the crashed one wrote.
        stack.base_url = await server.start()
        answer, guid = await post(stack, "workflow_job", foreign_job(99))
        assert answer == 200
        status, body = await stack.get("/api/v1/deliveries?limit=200")
        listed = {d["delivery_id"] for d in body["deliveries"]}
        assert status == 200 and guid in listed and {g for _, g in earlier} <= listed
    finally:
        await server.kill()
        await stack.close()
