"""`notify: ["deployment.started"]`: one signed callback when the run starts, through the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ghapp.cli.demo import demo_workflows
from ghapp.runner import BackgroundServer
from ghapp.simulator.stack import Stack
from ghapp.web.app import create_app

STARTED = "deployment.started"


async def test_unknown_notify_values_are_refused(stack: Stack) -> None:
    status, body = await stack.deploy("acme/shop", notify=["deployment.exploded"])
    assert status == 422
    assert body["errors"][0]["field"].startswith("notify")
    assert stack.sim.api_calls(method="POST", path="/dispatches") == 0


async def test_started_exactly_once_when_webhook_and_polls_of_two_replicas_report_it(
    postgres_url: str,
) -> None:
    # Both replicas poll every deployment all the time, and webhooks go to the first one: the
    # start is reported by a webhook and by polls, on two replicas at once.
    stack = await Stack.start(postgres_url, poll_after=0.05)
    other = BackgroundServer(create_app(stack.settings, retry_base=0.05))
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        await other.start()
        stack.sim.auto = False
        asked = [
            (await stack.deploy(repo, notify=[STARTED]))[1] for repo in ("acme/shop", "acme/api")
        ]
        asked += [(await stack.deploy("acme/shop", notify=[STARTED]))[1] for _ in range(3)]
        silent = (await stack.deploy("acme/shop"))[1]
        runs = [body["run"]["id"] for body in [*asked, silent]]
        await asyncio.gather(*(stack.sim.advance(run) for run in runs))
        await asyncio.sleep(0.5)  # polls of both replicas see the runs going
        await asyncio.gather(*(stack.sim.finish(run) for run in runs))
        for body in [*asked, silent]:
            await stack.receiver.wait_for(body["id"], timeout=30)
        await asyncio.sleep(1.0)  # a second started callback would have come by now
        for body in asked:
            mine = [c for c in stack.receiver.delivered() if c.deployment["id"] == body["id"]]
            started = [c for c in mine if c.event == STARTED]
            assert len(started) == 1, [c.event for c in mine]
            [completed] = [c for c in mine if c.event == "deployment.completed"]
            assert started[0].signature_ok
            assert started[0].deployment["state"] == "in_progress"
            assert started[0].deployment["run"]["id"] == body["run"]["id"]
            delivery = started[0].headers["X-Ghapp-Delivery"]
            assert delivery != completed.headers["X-Ghapp-Delivery"]
        assert [
            c.event for c in stack.receiver.delivered() if c.deployment["id"] == silent["id"]
        ] == ["deployment.completed"]
    finally:
        await other.stop()
        await stack.close()


async def test_none_when_the_completion_is_the_first_news(stack: Stack) -> None:
    stack.sim.faults.drop_webhooks = {"workflow_run.in_progress", "workflow_job"}
    _, body = await stack.deploy("acme/shop", notify=[STARTED])
    completed = await stack.receiver.wait_for(body["id"])
    assert completed.deployment["verdict"]["status"] == "success"
    await asyncio.sleep(0.5)
    events = [c.event for c in stack.receiver.received if c.deployment["id"] == body["id"]]
    assert events == ["deployment.completed"]


async def test_a_failing_started_callback_never_holds_up_the_verdict(tmp_path: Path) -> None:
    # The started callback's first attempt fails and its retry is seconds away: the verdict's
    # callback goes out meanwhile, overtaking it.
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", callback_retry_base=5.0)
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        stack.sim.auto = False
        stack.receiver.fail_with = [500]
        _, body = await stack.deploy("acme/shop", notify=[STARTED])
        await stack.sim.advance(body["run"]["id"])
        async with asyncio.timeout(10):
            while True:
                if any(c.event == STARTED for c in stack.receiver.received):
                    break
                await asyncio.sleep(0.02)
        await stack.sim.finish(body["run"]["id"])
        completed = await stack.receiver.wait_for(body["id"], timeout=4)
        assert completed.deployment["state"] == "completed"
        assert not any(c.event == STARTED for c in stack.receiver.delivered())
        started = await stack.receiver.wait_for(body["id"], event=STARTED, timeout=30)
        assert started.deployment["state"] == "in_progress"
    finally:
        await stack.close()
