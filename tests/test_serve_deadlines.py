"""The bounded answers, against a real `ghapp serve` process (production retry timings)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from secrets import token_hex

import aiohttp
import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator import Simulator
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import ProcessServer, Stack, app_key, free_port, settings_for

REPORT_TIMEOUT = 3.0


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Stack, ProcessServer]]:
    sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=token_hex(16))
    receiver = CallbackReceiver(secret=token_hex(16))
    await sim.start()
    await receiver.start()
    settings = settings_for(
        sim, receiver, f"sqlite:///{tmp_path / 'ghapp.db'}", report_timeout=REPORT_TIMEOUT
    )
    stack = Stack(sim=sim, receiver=receiver, settings=settings)
    stack.session = aiohttp.ClientSession()
    for repository, workflow in demo_workflows().items():
        sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    server = ProcessServer(settings, str(tmp_path / "serve.log"))
    try:
        stack.base_url = await server.start()
        sim.webhook_url = stack.base_url + settings.webhook_path
        yield stack, server
    finally:
        await server.kill()
        await stack.close()


async def test_stalled_log_and_late_dispatch_against_ghapp_serve(
    served: tuple[Stack, ProcessServer],
) -> None:
    stack, _ = served
    stack.sim.faults.stall_logs = True
    started = time.monotonic()
    status, body = await stack.deploy("acme/api")
    assert status == 202
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    assert time.monotonic() - started < REPORT_TIMEOUT + 4
    [job] = callback.deployment["verdict"]["failed_jobs"]
    assert job["log_excerpt"] == "(log unavailable: not read within REPORT_TIMEOUT (3 s))"
    stack.sim.faults.stall_logs = False

    stack.sim.faults.dispatch_answer_delay = 6.0
    started = time.monotonic()
    status, body = await stack.deploy("acme/shop", headers={"Idempotency-Key": "slow"})
    assert status == 202 and time.monotonic() - started < 5.0
    assert body["run"] is None
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    assert callback.deployment["verdict"]["status"] == "success"
    dispatches = [r for r in stack.sim.requests if r.path.endswith("/dispatches")]
    assert len(dispatches) == 2  # one per deployment: the late one was not sent again


async def test_refused_connections_against_ghapp_serve(
    served: tuple[Stack, ProcessServer], tmp_path: Path
) -> None:
    stack, _ = served
    port = free_port()
    settings = stack.settings.model_copy(update={"github_api_url": f"http://127.0.0.1:{port}"})
    down = ProcessServer(settings, str(tmp_path / "down.log"))
    try:
        stack.base_url = await down.start()
        started = time.monotonic()
        status, body = await stack.deploy("acme/shop")
        assert status == 503 and time.monotonic() - started < 5.0
        assert body["message"] == (
            f"GitHub could not take the dispatch: GitHub API at 127.0.0.1:{port} "
            "refused the connection"
        )
    finally:
        await down.kill()
