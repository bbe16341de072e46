"""A hostile workflow, through a real `ghapp serve` and the simulator: escape sequences, HTML,
Markdown and a bare fence in its names, log and annotations reach neither the verdict, nor the
report, nor `ghapp watch` (piped, and drawn by rich on a pseudo-terminal), nor the sandbox's
output, except as clean, quoted text."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from secrets import token_hex
from typing import Any

import aiohttp
import pytest
from test_report_quoting import HEADING, HTML, IMAGE, LINK, assert_quotes_only
from test_sandbox import start_sandbox

from ghapp.client import Client
from ghapp.simulator import Job, Simulator, Step, Workflow
from ghapp.simulator.model import Annotation
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import ProcessServer, Stack, app_key, free_port, settings_for

# Every escape an audit used: the clipboard (OSC 52), a hyperlink (OSC 8), fill the screen
# (ESC #8), reset (ESC c), the one-character CSI, backspaces, and ESC ESC ] re-forming an OSC.
CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsfHNo\x07"
HYPERLINK = "\x1b]8;;https://osc8.evil.example\x1b\\here\x1b]8;;\x1b\\"
ESCAPES = f"{CLIPBOARD}{HYPERLINK}\x1b#8\x1bc\x9b2J\x08\x08\x1b\x1b]0;pwned\x07"
# What must never arrive from the log: the payloads of its sequences, and these characters.
PAYLOADS = ["Y3VybCBldmlsfHNo", "osc8.evil.example", "pwned"]
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
REPO = "acme/hostile"
JOB_NAME = f"deploy {ESCAPES}[bold]markup[/bold] {HTML}"
STEP_NAME = f"Deploy `rm` ``` {ESCAPES}[red]step[/red]"
# As a person sees them: the hyperlink's text stays, every sequence is gone.
JOB_SHOWN = f"deploy here[bold]markup[/bold] {HTML}"
STEP_SHOWN = "Deploy `rm` ``` here[red]step[/red]"
ERROR_SHOWN = f"here{HTML} {HEADING}"
LOG = [
    f"Pulling {ESCAPES}image",
    "10%\r50%\rprogress 100%",
    HEADING,
    "```",
    HTML,
    f"{LINK} {IMAGE}",
    f"##[error]{ESCAPES}{HTML} {HEADING}",
]


def hostile_workflow() -> Workflow:
    """A deploy whose every name, log line and annotation was written by an attacker."""
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(
                name=JOB_NAME,
                environment="production",
                environment_url="https://hostile.example.com",
                steps=[
                    Step("Set up job"),
                    Step("Run actions/checkout@v4", command="actions/checkout@v4"),
                    Step(
                        STEP_NAME,
                        command="./deploy.sh",
                        fail=True,
                        output=LOG,
                        error=f"{ESCAPES}exit {HTML}",
                        annotations=[
                            Annotation(f"{IMAGE}\n{HEADING}{ESCAPES}", "warning", path=HTML)
                        ],
                    ),
                ],
            )
        ],
    )


def strings(value: Any) -> list[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def assert_clean(text: str) -> None:
    """Nothing a terminal would obey, and none of the sequences' payloads."""
    found = FORBIDDEN.search(text)
    assert found is None, repr(text[max(0, found.start() - 40) : found.end() + 40])
    for payload in PAYLOADS:
        assert payload not in text


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Stack]:
    """`ghapp serve` as a child process, the simulator with the hostile repository."""
    sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=token_hex(16))
    receiver = CallbackReceiver(secret=token_hex(16))
    await sim.start()
    await receiver.start()
    settings = settings_for(sim, receiver, f"sqlite:///{tmp_path / 'ghapp.db'}")
    stack = Stack(sim=sim, receiver=receiver, settings=settings)
    stack.session = aiohttp.ClientSession()
    sim.add_repository(REPO, default_branch="main").add_workflow(hostile_workflow())
    server = ProcessServer(settings, str(tmp_path / "serve.log"))
    try:
        stack.base_url = await server.start()
        sim.webhook_url = stack.base_url + settings.webhook_path
        yield stack
    finally:
        await server.kill()
        await stack.close()


def _env(stack: Stack, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHAPP_", "ORCHESTRATOR"))}
    env.update(ORCHESTRATOR_TOKEN=stack.settings.orchestrator_token or "", **extra)
    return env


async def test_the_verdict_and_report_of_a_hostile_run_are_clean_and_quoted(
    served: Stack,
) -> None:
    stack = served
    status, body = await stack.deploy(REPO)
    assert status == 202
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    # The whole callback body: every string in it (names, excerpt, annotations, summary,
    # evidence, report) is free of control characters and escape sequences.
    for text in strings(json.loads(callback.body)):
        assert_clean(text)
    verdict = callback.deployment["verdict"]
    [job] = verdict["failed_jobs"]
    assert job["name"] == JOB_SHOWN
    assert job["failed_step"]["name"] == STEP_SHOWN
    assert "progress 100%" in job["log_excerpt"] and "10%" not in job["log_excerpt"]
    assert f"Pulling hereimage\nprogress 100%\n{HEADING}\n```\n{HTML}\n" in job["log_excerpt"]
    # The summary quotes the job's words as code spans: its name, its step, its first error.
    assert verdict["summary"] == (
        f"Job `{JOB_SHOWN}` failed at step ````{STEP_SHOWN}````: `{ERROR_SHOWN}`"
    )
    async with stack.session.get(  # type: ignore[union-attr]
        f"{stack.base_url}/api/v1/deployments/{body['id']}/report",
        headers={"Authorization": f"Bearer {stack.settings.orchestrator_token}"},
    ) as answer:
        assert answer.status == 200
        report = await answer.text()
    assert report == verdict["report"]
    tokens = assert_quotes_only(report, [HEADING, HTML, LINK, IMAGE, "##[error]"])
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h1", "h2"]


async def _run(stack: Stack, cwd: Path, *argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", *argv, "--url", stack.base_url,
        cwd=cwd, env=_env(stack), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_watch_one_line_per_change_prints_nothing_from_the_log_that_a_terminal_obeys(
    served: Stack, tmp_path: Path
) -> None:
    served.sim.step_delay = 0.3
    code, out = await _run(served, tmp_path, "deploy", REPO, "--watch")
    assert code == 1, out
    assert_clean(out)
    # Followed live: the hostile step was printed while it ran, as plain characters.
    running = [line for line in out.splitlines() if STEP_SHOWN in line]
    assert any("in_progress" in line for line in running), out
    assert f"failed job {JOB_SHOWN!r}, step 3 {STEP_SHOWN!r} (failure)" in out
    assert ERROR_SHOWN in out


async def test_watch_on_a_terminal_receives_no_sequence_from_the_log(
    served: Stack, tmp_path: Path
) -> None:
    served.sim.step_delay = 0.3
    status, body = await served.deploy(REPO)
    assert status == 202
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", "watch", body["id"], "--url", served.base_url,
        cwd=tmp_path, env=_env(served, TERM="xterm-256color", COLUMNS="160"),
        stdout=secondary, stderr=secondary,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the other end closed: the process is gone
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = asyncio.get_running_loop().run_in_executor(None, drain)
    code = await asyncio.wait_for(process.wait(), 60)
    await asyncio.wait_for(reader, 10)
    os.close(primary)
    screen = b"".join(chunks)
    assert code == 1, screen
    assert b"\x1b[" in screen  # rich drew it: its own styling and cursor moves are there
    # ... but nothing the log carried: no OSC (clipboard, hyperlink, title), no ESC #8, no
    # ESC c, no 8-bit CSI, no BEL, no backspace, none of the sequences' payloads.
    for sequence in (b"\x1b]", b"\x1b#", b"\x1bc", b"\xc2\x9b", b"\x07", b"\x08", b"\x1b\x1b"):
        assert sequence not in screen, sequence
    text = screen.decode()
    for payload in PAYLOADS:
        assert payload not in text
    # Remote names are text, never rich markup: the brackets arrive as typed.
    assert "[bold]markup[/bold]" in text and "[red]step[/red]" in text
    assert f"X {STEP_SHOWN}" in text  # the view's own row for the failed step, drawn by rich


async def test_the_sandbox_prints_a_hostile_verdict_cleanly() -> None:
    running = await start_sandbox("--port", str(free_port()), "--github-port", str(free_port()))
    process = running.process
    try:
        env = running.env
        scenario = {"outcome": "failure", "after_seconds": 0.2, "step": STEP_NAME, "log": LOG}
        async with aiohttp.ClientSession() as http:
            url = f"{env['GITHUB_API_URL']}/sandbox/scenarios/{REPO}"
            async with http.put(url, json=scenario) as answer:
                assert answer.status == 200
        async with Client(env["GHAPP_URL"], env["ORCHESTRATOR_TOKEN"]) as client:
            deployment = await client.deploy(REPO)
            await client.wait(deployment.id, interval=0.2, timeout=60)
        assert process.stderr is not None
        printed = b""
        async with asyncio.timeout(30):
            while b"callback deployment.completed" not in printed:
                printed += await process.stderr.readline()
        text = printed.decode()
        assert_clean(text)
        [line] = [line for line in text.splitlines() if "deployment.completed" in line]
        assert deployment.id in line and "failure: Job `deploy` failed at step" in line
        assert ERROR_SHOWN in line
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.wait()
