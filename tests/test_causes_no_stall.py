"""A crafted failing run against a real `ghapp serve`: its verdict comes, /healthz never stalls.

Each failed job's log holds the lines that made the cause rules backtrack (tests/data/
causes_crafted.yml), as long as the excerpt keeps them. A separate process polls `/healthz`
over its own connection the whole time, and the slowest answer is what the test judges; the
same poll of the idle server comes first, so that a failure shows what the machine's own load
costs (on a 2-core machine shared by busy neighbours, tens of milliseconds).

One deploy goes first: ghapp loads its GitHub client (aiohttp, PyJWT and cryptography, about
0.5 s of imports) on the first deploy rather than at start-up, to keep an idle server small,
and that one-time load is not what this test measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
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
HEALTHZ_LIMIT_MS = 100.0
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


# The poller runs in its own interpreter: in this process it would wait for the GIL whenever
# the simulator (on the test's event loop) works, and count that against ghapp.
POLLER = r"""
import http.client, json, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
latencies, failures = [], []
connection = http.client.HTTPConnection(host, port, timeout=10)
while not done.is_set():
    started = time.perf_counter()
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
    except OSError as exc:
        failures.append(repr(exc))
        connection.close()
        continue
    latencies.append(time.perf_counter() - started)
    if response.status != 200:
        failures.append(f"status {response.status}")
    if len(latencies) == 1:
        print("polling", flush=True)
    time.sleep(0.005)
print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
"""


class HealthPoller:
    """GET /healthz over one kept-alive connection, back to back, timing each answer."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.where = [parts.hostname or "127.0.0.1", str(parts.port or 80)]
        self.process: asyncio.subprocess.Process | None = None
        self.latencies: list[float] = []
        self.failures: list[str] = []

    async def __aenter__(self) -> HealthPoller:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", POLLER, *self.where,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        first = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        assert first == b"polling\n", first
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        out, _ = await asyncio.wait_for(self.process.communicate(b"stop\n"), timeout=30)
        result = json.loads(out)
        self.latencies, self.failures = result["latencies"], result["failures"]

    def slowest_ms(self) -> float:
        return max(self.latencies) * 1000


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
    # The same measure with nothing to do: what this machine's other work alone costs /healthz.
    async with HealthPoller(stack.base_url) as idle:
        await asyncio.sleep(1.0)
    async with HealthPoller(stack.base_url) as poller:
        started = time.monotonic()
        status, body = await stack.deploy("acme/crafted")
        assert status == 202, body
        callback = await stack.receiver.wait_for(body["id"], timeout=60)
        elapsed = time.monotonic() - started
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
    # Enough answers to have watched the whole classification (it may take well under 1 s).
    assert len(poller.latencies) >= 5, len(poller.latencies)
    print(
        f"\n/healthz during the crafted run: {len(poller.latencies)} answers, slowest "
        f"{poller.slowest_ms():.1f} ms (idle: {idle.slowest_ms():.1f} ms); verdict after "
        f"{elapsed:.2f} s"
    )
    assert poller.slowest_ms() < HEALTHZ_LIMIT_MS, (
        f"/healthz took {poller.slowest_ms():.0f} ms while the crafted run was classified "
        f"({len(poller.latencies)} answers); idle, its slowest answer took "
        f"{idle.slowest_ms():.0f} ms on this machine"
    )
