"""`ghapp sandbox` as a real child process: settings printed, scenarios over HTTP and from YAML."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ghapp.client import Client, verify_callback
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import free_port

SSH_REFUSED = "ssh: connect to host 203.0.113.7 port 22: Connection refused"
SCENARIOS = f"""\
default:
  url: https://default.example.com
  after_seconds: 0.2
acme/cancelled:
  outcome: cancelled
  after_seconds: 0.2
acme/slow-github:
  after_seconds: 0.2
  github_errors_for_seconds: 1.5
acme/quiet:
  after_seconds: 0.2
  lose_webhooks: all
acme/late:
  outcome: timed_out
  step: Build and push the image
  log: ["{SSH_REFUSED}"]
  after_seconds: 0.2
"""


class SandboxProcess:
    """The child process and the settings it printed."""

    def __init__(self, process: asyncio.subprocess.Process, env: dict[str, str]) -> None:
        self.process = process
        self.env = env


async def start_sandbox(*args: str) -> SandboxProcess:
    """Start `ghapp sandbox` and read its NAME=value lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ghapp",
        "sandbox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    env: dict[str, str] = {}
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while len(env) < 7:
            line = (await process.stdout.readline()).decode()
            if not line:
                assert process.stderr is not None
                raise AssertionError((await process.stderr.read()).decode())
            name, _, value = line.strip().partition("=")
            env[name] = value
    return SandboxProcess(process, env)


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """The orchestrator's callback endpoint (its secret is not the sandbox's: checked below)."""
    receiver = CallbackReceiver(secret="unused")
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def sandbox(tmp_path: Path, receiver: CallbackReceiver) -> AsyncIterator[SandboxProcess]:
    scenarios = tmp_path / "scenarios.yml"
    scenarios.write_text(SCENARIOS)
    running = await start_sandbox(
        "--port",
        str(free_port()),
        "--github-port",
        str(free_port()),
        "--scenarios",
        str(scenarios),
        "--callback-url",
        receiver.url,
    )
    yield running
    if running.process.returncode is None:
        running.process.kill()
        await running.process.wait()


async def test_sandbox_prints_its_settings_plays_scenarios_and_stops_on_sigterm(
    sandbox: SandboxProcess, receiver: CallbackReceiver
) -> None:
    env = sandbox.env
    assert set(env) == {
        "GHAPP_URL",
        "ORCHESTRATOR_TOKEN",
        "CALLBACK_SECRET",
        "GITHUB_API_URL",
        "APP_ID",
        "PRIVATE_KEY_PATH",
        "WEBHOOK_SECRET",
    }
    scenario_url = f"{env['GITHUB_API_URL']}/sandbox/scenarios/acme/shop"
    failure = {"outcome": "failure", "after_seconds": 0.2, "log": [SSH_REFUSED]}
    async with aiohttp.ClientSession() as http:
        async with http.put(scenario_url, json=failure) as answer:
            assert answer.status == 200
        async with http.get(scenario_url) as answer:
            assert (await answer.json())["log"] == [SSH_REFUSED]
        async with http.put(scenario_url, json={"outcome": "exploded"}) as answer:
            assert answer.status == 422
            assert (await answer.json())["errors"][0]["field"] == "outcome"
        async with http.put(scenario_url, json={"after_seconds": "soon"}) as answer:
            assert answer.status == 422 and "after_seconds" in (await answer.json())["message"]
        async with http.get(scenario_url) as answer:
            assert (await answer.json())["outcome"] == "failure"  # the bad PUTs changed nothing

    repositories = [
        "acme/shop",
        "acme/cancelled",
        "acme/late",
        "acme/quiet",
        "acme/slow-github",
        "anyone/anything",
    ]
    async with Client(env["GHAPP_URL"], env["ORCHESTRATOR_TOKEN"]) as client:
        started = [await client.deploy(repository) for repository in repositories]
        done = await asyncio.gather(*(client.wait(d.id, interval=0.2, timeout=60) for d in started))
    verdicts = {d.repository: d.verdict for d in done}
    assert all(v is not None for v in verdicts.values())
    shop = verdicts["acme/shop"]
    assert shop is not None and shop.status == "failure"
    assert shop.failed_jobs[0].failed_step is not None
    assert shop.failed_jobs[0].failed_step.name == "Deploy on the server"
    assert SSH_REFUSED in shop.failed_jobs[0].log_excerpt
    assert getattr(verdicts["acme/cancelled"], "reason", None) == "cancelled"
    late = verdicts["acme/late"]
    assert late is not None and late.reason == "timed_out"
    assert late.failed_jobs[0].failed_step is not None
    assert late.failed_jobs[0].failed_step.name == "Build and push the image"
    # A repository's own scenario replaces the default whole: without a url, the derived one.
    expected = {
        "acme/quiet": "https://quiet.acme.example",
        "acme/slow-github": "https://slow-github.acme.example",
        "anyone/anything": "https://default.example.com",
    }
    for repository, url in expected.items():
        verdict = verdicts[repository]
        assert verdict is not None and verdict.status == "success", (repository, verdict)
        assert verdict.deployed_url == url

    # The callbacks went to --callback-url, signed with the printed secret.
    for deployment in done:
        callback = await receiver.wait_for(deployment.id)
        verify_callback(callback.body, callback.headers, env["CALLBACK_SECRET"])

    async with aiohttp.ClientSession() as http:
        async with http.delete(scenario_url) as answer:
            assert answer.status == 204
        async with http.get(scenario_url) as answer:
            assert (await answer.json())["url"] == "https://default.example.com"

    sandbox.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        assert await sandbox.process.wait() == 0


async def test_sigint_exits_zero_too(tmp_path: Path) -> None:
    running = await start_sandbox(
        "--port",
        str(free_port()),
        "--github-port",
        str(free_port()),
        "--database-url",
        f"sqlite:///{tmp_path / 'sandbox.db'}",
    )
    os.kill(running.process.pid, signal.SIGINT)
    async with asyncio.timeout(20):
        assert await running.process.wait() == 0
    assert (tmp_path / "sandbox.db").exists()


async def test_a_bad_scenarios_file_names_the_field(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.yml"
    scenarios.write_text("acme/shop:\n  outcome: failure\n  lose_webhooks: some\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ghapp",
        "sandbox",
        "--scenarios",
        str(scenarios),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    assert b"acme/shop.lose_webhooks" in err
