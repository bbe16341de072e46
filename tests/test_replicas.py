"""`ghapp serve` replicas on one database: behind a balancer, killed, started together."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from secrets import token_hex

import aiohttp

from ghapp.cli.demo import demo_workflows
from ghapp.simulator import Simulator
from ghapp.simulator.balancer import RoundRobinBalancer
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import ProcessServer, Stack, app_key, settings_for

DEPLOYMENTS = 24
# Leases are 6 s; the rest is the survivor working through what is left on a loaded machine
# (the suite runs in parallel). The old leases alone were 30 s.
TAKEOVER_S = 20.0


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



async def test_three_replicas_started_at_once_on_a_fresh_database(
    postgres_url: str, tmp_path: Path
) -> None:
    sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=token_hex(16))
    receiver = CallbackReceiver(secret=token_hex(16))
    await sim.start()
    await receiver.start()
    # Nothing has touched the database: the replicas find it empty, all at the same moment.
    stack = Stack(sim=sim, receiver=receiver, settings=settings_for(sim, receiver, postgres_url))
    stack.session = aiohttp.ClientSession()
    for repository, workflow in demo_workflows().items():
        sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    replicas = [ProcessServer(stack.settings, str(tmp_path / f"r{n}.log")) for n in (1, 2, 3)]
    try:
        urls = await asyncio.gather(*(replica.start(timeout=60) for replica in replicas))
        assert all(replica.process and replica.process.returncode is None for replica in replicas)
        # Deployed through the first; GitHub's webhooks go to the second, which finishes it.
        stack.base_url = urls[0]
        sim.webhook_url = urls[1] + stack.settings.webhook_path
        status, body = await stack.deploy("acme/api")
        assert status == 202, body
        callback = await receiver.wait_for(body["id"], timeout=30)
        assert callback.deployment["verdict"]["status"] == "failure"
        assert callback.deployment["verdict"]["failed_jobs"][0]["log_excerpt"]
        sent = [d for d in sim.webhooks.deliveries if d.ok]
        assert sent and all((d.url or "").startswith(urls[1]) for d in sent)
    finally:
        for replica in replicas:
            await replica.kill()
        await stack.close()


async def test_serve_with_three_workers_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=token_hex(16))
    receiver = CallbackReceiver(secret=token_hex(16))
    await sim.start()
    await receiver.start()
    # No file yet: the three workers create and migrate it together.
    settings = settings_for(sim, receiver, f"sqlite:///{tmp_path / 'fresh.db'}")
    stack = Stack(sim=sim, receiver=receiver, settings=settings)
    stack.session = aiohttp.ClientSession()
    sim.add_repository("acme/shop", default_branch="main").add_workflow(
        demo_workflows()["acme/shop"]
    )
    server = ProcessServer(settings, str(tmp_path / "serve.log"), workers=3)
    try:
        stack.base_url = await server.start(timeout=60)
        sim.webhook_url = stack.base_url + settings.webhook_path
        await asyncio.sleep(1.0)  # a worker that failed to migrate would have stopped them all
        assert server.process is not None and server.process.returncode is None
        status, body = await stack.deploy("acme/shop")
        assert status == 202
        callback = await receiver.wait_for(body["id"], timeout=30)
        assert callback.deployment["verdict"]["status"] == "success"
    finally:
        await server.kill()
        await stack.close()
