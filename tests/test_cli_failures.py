"""The command line without traps: a closed pipe, a refused connection or a URL without its
scheme ends a command with one line on stderr and exit status 2, never a traceback; and
`ghapp deploy --metadata K=V --callback-url URL`. Real subprocesses, as a person runs them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghapp.simulator import Simulator
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import Stack, free_port


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _env(**extra: str) -> dict[str, str]:
    """The environment minus any ghapp setting of the machine running the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GHAPP_", "ORCHESTRATOR", "APP_ID", "PRIVATE_KEY", "GITHUB_API"))
    }
    return {**env, **extra}


async def ghapp(*argv: str, cwd: Path, env: dict[str, str], closed_stdout: bool = False) -> Ran:
    """Run `python -m ghapp ARGV`; with `closed_stdout`, its stdout is a pipe nobody reads
    (closed before it starts, as `| head -1` is once it has its line)."""
    stdout: int = asyncio.subprocess.PIPE
    reader = writer = -1
    if closed_stdout:
        reader, writer = os.pipe()
        os.close(reader)
        stdout = writer
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ghapp", *argv,
            cwd=cwd, env=env, stdout=stdout, stderr=asyncio.subprocess.PIPE,
        )
    finally:
        if closed_stdout:
            os.close(writer)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Ran(process.returncode, (out or b"").decode(), err.decode())


def one_line(ran: Ran) -> str:
    """The single stderr line of a command that stopped cleanly with status 2."""
    assert "Traceback" not in ran.err, ran.err
    lines = ran.err.splitlines()
    assert ran.code == 2 and len(lines) == 1, ran
    assert lines[0].startswith("ghapp: ")
    return lines[0]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    # Any repository name works on this simulator: it plays the sandbox's scenarios.
    from ghapp.simulator.scenarios import ScenarioBook, attach

    def plays_scenarios(sim: Simulator) -> None:
        attach(sim, ScenarioBook())

    stack = await Stack.start(
        f"sqlite:///{tmp_path / 'ghapp.db'}",
        configure_simulator=plays_scenarios,
        callback_allowed_hosts=["127.0.0.1"],
        step_delay=0.05,
    )
    yield stack
    await stack.close()


async def test_a_refused_connection_is_one_line_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = _env(ORCHESTRATOR_TOKEN="t" * 32)
    for argv in (
        ("watch", "--url", url, "dep_0123456789abcdef01234567"),
        ("deploy", "acme/shop", "--url", url),
        ("deliveries", "local", "--url", url),
    ):
        line = one_line(await ghapp(*argv, cwd=tmp_path, env=env))
        assert url in line and "connection refused" in line, line
        assert "ClientConnectorError" not in line and "ConnectionKey" not in line


async def test_a_url_without_its_scheme_says_so(tmp_path: Path) -> None:
    env = _env(ORCHESTRATOR_TOKEN="t" * 32, WEBHOOK_SECRET="s" * 32)
    for argv in (
        ("watch", "--url", "127.0.0.1:3000", "dep_0123456789abcdef01234567"),
        ("deploy", "acme/shop", "--url", "127.0.0.1:3000"),
        ("deliveries", "local", "--url", "127.0.0.1:3000"),
        ("replay", "dl_0123", "--url", "127.0.0.1:3000/api/github/webhooks"),
    ):
        line = one_line(await ghapp(*argv, cwd=tmp_path, env=env))
        assert "--url '127.0.0.1:3000" in line and "give the scheme, e.g. http://" in line, line
    line = one_line(await ghapp("deploy", "acme/shop", "--url", "ftp://127.0.0.1:3000",
                                cwd=tmp_path, env=env))
    assert "is not an http(s) URL" in line


async def test_a_closed_pipe_is_one_line_and_status_2(stack: Stack, tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text(stack.sim.private_key_pem)
    env = _env(
        APP_ID=str(stack.sim.app_id),
        PRIVATE_KEY_PATH=str(key),
        GITHUB_API_URL=stack.sim.api_url,
        ORCHESTRATOR_TOKEN=stack.settings.orchestrator_token or "",
    )
    status, body = await stack.deploy("acme/shop")
    assert status == 202
    await stack.receiver.wait_for(body["id"])
    for argv in (
        ("deliveries", "list"),  # `ghapp deliveries list | head -1`
        ("watch", body["id"], "--url", stack.base_url),  # `ghapp watch ID | head -1`
        ("template", "deploy"),
    ):
        ran = await ghapp(*argv, cwd=tmp_path, env=env, closed_stdout=True)
        assert "closed early (broken pipe)" in one_line(ran), ran
    # The same commands with someone reading: all is well.
    ran = await ghapp("deliveries", "list", cwd=tmp_path, env=env)
    assert ran.code == 0 and "workflow_run" in ran.out, ran


async def test_deploy_takes_metadata_and_a_callback_url(stack: Stack, tmp_path: Path) -> None:
    other = CallbackReceiver(secret=stack.receiver.secret)
    await other.start()
    try:
        env = _env(ORCHESTRATOR_TOKEN=stack.settings.orchestrator_token or "")
        ran = await ghapp(
            "deploy", "acme/shop", "--url", stack.base_url,
            "--metadata", "thread_id=t-42", "--metadata", "ticket=OPS=7",
            "--callback-url", other.url,
            cwd=tmp_path, env=env,
        )
        assert ran.code == 0, ran
        deployment_id = ran.out.strip()
        callback = await other.wait_for(deployment_id, 30)
    finally:
        await other.stop()
    assert callback.signature_ok
    assert callback.deployment["metadata"] == {"thread_id": "t-42", "ticket": "OPS=7"}
    assert callback.deployment["callback"]["url"] == other.url
    assert not [c for c in stack.receiver.received if c.deployment["id"] == deployment_id]
    # A pair without '=' or a callback URL that is not one changes nothing on the server.
    for bad in (("--metadata", "thread_id"), ("--callback-url", "127.0.0.1:9/callbacks")):
        line = one_line(await ghapp("deploy", "acme/shop", "--url", stack.base_url, *bad,
                                    cwd=tmp_path, env=env))
        assert bad[1] in line
    _, listing = await stack.get("/api/v1/deployments?repository=acme/shop")
    assert [d["id"] for d in listing["deployments"]] == [deployment_id]
