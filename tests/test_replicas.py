"""Two `ghapp serve` replicas on one PostgreSQL database behind a round-robin balancer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.balancer import RoundRobinBalancer
from ghapp.simulator.stack import ProcessServer, Stack

DEPLOYMENTS = 50
TAKEOVER_S = 15.0


async def test_two_replicas_one_killed_exactly_one_callback_each(
    postgres_url: str, tmp_path: Path
) -> None:
    stack = await Stack.start(postgres_url, retry_base=0.05, poll_after=2)
    await stack.stop_ghapp()  # the replicas below are real processes
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    replicas = [ProcessServer(stack.settings, str(tmp_path / f"r{n}.log")) for n in (1, 2)]
    balancer = RoundRobinBalancer([])
    try:
        urls = await asyncio.gather(*(replica.start() for replica in replicas))
        balancer.upstreams = list(urls)
        stack.base_url = await balancer.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        stack.sim.step_delay = 0.3  # runs overlap the kill below
        stack.receiver.delay = 0.2  # so do callbacks: the killed replica holds some mid-send
        deployments = await asyncio.gather(
            *(
                stack.deploy(
                    "acme/shop" if n % 2 else "acme/api", headers={"Idempotency-Key": f"k{n}"}
                )
                for n in range(DEPLOYMENTS)
            )
        )
        assert all(status == 202 for status, _ in deployments)
        await asyncio.sleep(0.5)
        # Both replicas took webhooks before one of them dies mid-flight.
        assert all(balancer.sent[url] > 0 for url in urls)
        killed_at = time.time()
        await replicas[0].kill()
        ids = [body["id"] for _, body in deployments]
        for deployment_id in ids:
            await stack.receiver.wait_for(deployment_id, timeout=60)
        # Its leases (callbacks, reports, polls) run out within seconds, not the 30 s of old.
        last = max(c.arrived_at for c in stack.receiver.delivered())
        assert last - killed_at <= TAKEOVER_S
        await asyncio.sleep(1.0)  # a duplicate callback would have arrived by now
        delivered = [c.deployment["id"] for c in stack.receiver.delivered()]
        twice = {i: n for i, n in Counter(delivered).items() if n > 1}
        assert sorted(delivered) == sorted(ids), f"each deployment exactly one callback: {twice}"
        for _, body in deployments:
            callback = await stack.receiver.wait_for(body["id"])
            expected = "success" if body["repository"] == "acme/shop" else "failure"
            assert callback.deployment["verdict"]["status"] == expected
            assert callback.deployment["run"]["id"] == body["run"]["id"]
    finally:
        await balancer.stop()
        for replica in replicas:
            await replica.kill()
        await stack.close()


async def test_serve_with_two_workers_on_sqlite(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", retry_base=0.05)
    await stack.stop_ghapp()
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    server = ProcessServer(stack.settings, str(tmp_path / "serve.log"), workers=2)
    try:
        stack.base_url = await server.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        answers = await asyncio.gather(
            *(stack.deploy(repo) for repo in ("acme/shop", "acme/api") * 5)
        )
        ids = [body["id"] for _, body in answers]
        for deployment_id in ids:
            await stack.receiver.wait_for(deployment_id, timeout=60)
        await asyncio.sleep(1.0)
        assert sorted(c.deployment["id"] for c in stack.receiver.delivered()) == sorted(ids)
    finally:
        await server.kill()
        await stack.close()
