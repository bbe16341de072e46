"""`ghapp watch` ends with the run's link, and on a terminal shows a failure's report rendered
from its Markdown (rich), remote text quoted as written: never as markup."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ghapp.simulator import Simulator
from ghapp.simulator.scenarios import Scenario, ScenarioBook, attach
from ghapp.simulator.stack import Stack

HOSTILE = "[bold red]boom[/] <script>alert(1)</script> **not bold**"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    book = ScenarioBook(
        {
            "acme/api": Scenario(
                outcome="failure",
                after_seconds=0.5,
                log=["ssh: connect to host 203.0.113.7 port 22: Connection refused", HOSTILE],
            ),
            "acme/shop": Scenario(after_seconds=0.5, url="https://shop.example.com"),
        }
    )

    def plays(sim: Simulator) -> None:
        attach(sim, book)

    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", configure_simulator=plays)
    yield stack
    await stack.close()


def _env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHAPP_", "ORCHESTRATOR"))}
    env.update(ORCHESTRATOR_TOKEN=stack.settings.orchestrator_token or "", TERM="xterm",
               COLUMNS="120")
    return env


async def on_a_terminal(stack: Stack, cwd: Path, *argv: str) -> tuple[int, str]:
    """Run `python -m ghapp ARGV` on a pseudo-terminal; (status, what the screen received)."""
    primary, secondary = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", *argv, "--url", stack.base_url,
        cwd=cwd, env=_env(stack), stdout=secondary, stderr=secondary,
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
    return code, b"".join(chunks).decode(errors="replace")


async def test_a_failure_on_a_terminal_renders_the_report(stack: Stack, tmp_path: Path) -> None:
    status, body = await stack.deploy("acme/api")
    assert status == 202
    code, screen = await on_a_terminal(stack, tmp_path, "watch", body["id"])
    assert code == 1, screen
    run_url = f"https://github.com/acme/api/actions/runs/{body['run']['id']}"
    assert f"run: {run_url}" in screen
    # Rendered, not raw: the heading and bold markers are gone, their words are there.
    assert "Deploy of" in screen and "# Deploy of" not in screen
    assert "Cause:" in screen and "**Cause:**" not in screen
    # The log line is quoted as written: rich markup, HTML and Markdown in it stay characters.
    assert "[bold red]boom[/]" in screen
    assert "<script>alert(1)</script> **not bold**" in screen


async def test_not_on_a_terminal_the_report_stays_text(stack: Stack, tmp_path: Path) -> None:
    status, body = await stack.deploy("acme/api")
    assert status == 202
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", "watch", body["id"], "--url", stack.base_url,
        cwd=tmp_path, env=_env(stack), stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 1, text
    assert "\x1b[" not in text  # no terminal codes in a pipe or a log
    assert "\n# Deploy of" in text and "**Cause:**" in text
    assert f"run: https://github.com/acme/api/actions/runs/{body['run']['id']}" in text


async def test_a_success_prints_the_run_link(stack: Stack, tmp_path: Path) -> None:
    code, screen = await on_a_terminal(
        stack, tmp_path, "deploy", "acme/shop", "--watch"
    )
    assert code == 0, screen
    assert "deployed to https://shop.example.com" in screen
    assert "run: https://github.com/acme/shop/actions/runs/" in screen
