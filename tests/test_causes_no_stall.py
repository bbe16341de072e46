"""A crafted failing run against a real `ghapp serve`: its verdict comes, /healthz never stalls.

Each failed job's log holds the lines that made the cause rules backtrack (tests/data/
causes_crafted.yml), as long as the excerpt keeps them. A thread polls `/healthz` over its own
connection the whole time (not on the test's event loop, which also runs the simulator), and
the slowest answer is what the test judges.

One deploy goes first: ghapp loads its GitHub client (aiohttp, PyJWT and cryptography, about
0.5 s of imports) on the first deploy rather than at start-up, to keep an idle server small,
and that one-time load is not what this test measures.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from secrets import token_hex
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from ghapp.simulator import Job, Simulator, Step, Workflow
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import ProcessServer, Stack, app_key, settings_for

CRAFTED = yaml.safe_load((Path(__file__).parent / "data" / "causes_crafted.yml").read_text())
# Under the excerpt's per-line cap (about 4 KiB), so each line reaches the classifier whole;
# seven of them fill most of the excerpt's 32 KiB.
LINE = 4000
JOBS = 3
DECIDING = (
    "COPY failed: file not found in build context or excluded by .dockerignore: "
    "stat app.py: file does not exist"
)
HEALTHZ_LIMIT = 0.100
VERDICT_WITHIN = 15.0


def crafted_output() -> list[str]:
    """The lead, every crafted line at LINE characters (the first ones twice), the deciding line."""
    lines = [(item["repeat"] * LINE)[:LINE] for item in CRAFTED["lines"]]
    return [CRAFTED["lead"], *lines, *lines[:3], DECIDING]


def crafted_workflow() -> Workflow:
    step = Step(
        "Build the image",
        command="docker build -t acme/crafted .",
        fail=True,
        output=crafted_output(),
        error="Process completed with exit code 1.",
    )
    jobs = [Job(name=f"build-{n}", steps=[Step("Set up job"), step]) for n in range(JOBS)]
    return Workflow(file="deploy.yml", name="Deploy", jobs=jobs)


class HealthPoller(threading.Thread):
    """GET /healthz over one kept-alive connection, back to back, timing each answer."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            while not self.done.is_set():
                started = time.perf_counter()
                try:
                    connection.request("GET", "/healthz")
                    response = connection.getresponse()
                    response.read()
                except OSError as exc:
                    self.failures.append(repr(exc))
                    connection.close()
                    continue
                self.latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    self.failures.append(f"status {response.status}")
                time.sleep(0.005)
        finally:
            connection.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Stack]:
    sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=token_hex(16))
    receiver = CallbackReceiver(secret=token_hex(16))
    await sim.start()
    await receiver.start()
    settings = settings_for(sim, receiver, f"sqlite:///{tmp_path / 'ghapp.db'}")
    stack = Stack(sim=sim, receiver=receiver, settings=settings)
    stack.session = aiohttp.ClientSession()
    sim.add_repository("acme/crafted", default_branch="main").add_workflow(crafted_workflow())
    warm = Workflow(file="deploy.yml", name="Deploy", jobs=[Job("deploy", [Step("Set up job")])])
    sim.add_repository("acme/warm", default_branch="main").add_workflow(warm)
    server = ProcessServer(settings, str(tmp_path / "serve.log"))
    try:
        stack.base_url = await server.start()
        sim.webhook_url = stack.base_url + settings.webhook_path
        yield stack
    finally:
        await server.kill()
        await stack.close()


async def test_a_crafted_log_gets_its_verdict_while_healthz_answers(served: Stack) -> None:
    stack = served
    _, body = await stack.deploy("acme/warm")
    warm = await stack.receiver.wait_for(body["id"], timeout=60)
    assert warm.deployment["verdict"]["status"] == "success"
    poller = HealthPoller(stack.base_url)
    poller.start()
    try:
        started = time.monotonic()
        status, body = await stack.deploy("acme/crafted")
        assert status == 202, body
        callback = await stack.receiver.wait_for(body["id"], timeout=60)
        elapsed = time.monotonic() - started
    finally:
        poller.done.set()
        poller.join(timeout=15)
    verdict: dict[str, Any] = callback.deployment["verdict"]
    cause = verdict["cause"]
    assert (cause["category"], cause["rule"]) == ("code", "docker.build-file"), cause
    assert cause["evidence"] == DECIDING
    assert len(verdict["failed_jobs"]) == JOBS
    # The crafted lines reached the classifier whole (they are in the excerpt it read).
    excerpt = verdict["failed_jobs"][0]["log_excerpt"]
    assert all(line in excerpt for line in crafted_output())
    assert elapsed < VERDICT_WITHIN, elapsed
    assert not poller.failures, poller.failures[:3]
    assert len(poller.latencies) >= 20, len(poller.latencies)
    slowest = max(poller.latencies)
    assert slowest < HEALTHZ_LIMIT, (
        f"/healthz took {slowest * 1000:.0f} ms while the crafted run was classified "
        f"({len(poller.latencies)} answers)"
    )
