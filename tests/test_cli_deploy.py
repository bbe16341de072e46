"""`ghapp deploy` and `ghapp watch` as a person runs them: real subprocesses against a stack."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

from ghapp.simulator.stack import Stack


async def ghapp(stack: Stack, cwd: Path, *argv: str, token: str | None = None) -> tuple[int, str]:
    """Run `python -m ghapp ARGV` with only the server's URL and token; (status, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHAPP_", "ORCHESTRATOR"))}
    env["ORCHESTRATOR_TOKEN"] = token or stack.settings.orchestrator_token or ""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ghapp",
        *argv,
        "--url",
        stack.base_url,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_deploy_watch_on_a_success_exits_0(stack: Stack, tmp_path: Path) -> None:
    stack.sim.step_delay = 0.1
    argv = ("deploy", "acme/shop", "--env", "production", "--watch")
    code, out = await ghapp(stack, tmp_path, *argv)
    lines = out.splitlines()
    assert code == 0, out
    assert lines[0].startswith("dep_") and " " not in lines[0]
    # One line per change, the steps counting up, then the verdict.
    assert any("in_progress" in line and "steps" in line for line in lines[1:])
    assert any("deploy: " in line for line in lines[1:]), out
    assert lines[-3].startswith("success: Deployed acme/shop@main")
    assert lines[-2] == "deployed to https://shop.example.com"
    assert lines[-1].startswith("run: https://github.com/acme/shop/actions/runs/")
    _, body = await stack.get(f"/api/v1/deployments/{lines[0]}")
    assert body["inputs"] == {"environment": "production"}


async def test_watch_on_a_failure_exits_1_and_shows_the_failing_step(
    stack: Stack, tmp_path: Path
) -> None:
    stack.sim.step_delay = 0.1
    code, out = await ghapp(stack, tmp_path, "deploy", "acme/api")
    assert code == 0 and out.count("\n") == 1
    deployment_id = out.strip()
    code, out = await ghapp(stack, tmp_path, "watch", deployment_id)
    assert code == 1, out
    assert "failure: " in out
    assert "failed job 'deploy', step " in out and "'Deploy on the server'" in out
    # The verdict's report follows: the cause, the excerpt in a fenced block, the links.
    assert "Connection refused" in out and "```" in out


async def test_watch_exits_2_when_it_cannot_follow(stack: Stack, tmp_path: Path) -> None:
    code, out = await ghapp(stack, tmp_path, "watch", "dep_nosuch")
    assert code == 2 and "no deployment dep_nosuch" in out
    _, body = await stack.deploy("acme/shop")
    code, out = await ghapp(stack, tmp_path, "watch", body["id"], token="x" * 20)
    assert code == 2 and "refused the token" in out
    await stack.stop_ghapp()
    code, out = await ghapp(stack, tmp_path, "watch", body["id"])
    assert code == 2 and ("could not reach" in out or "lost the server" in out), out


async def test_watch_on_a_terminal_draws_jobs_and_steps(stack: Stack, tmp_path: Path) -> None:
    # On a terminal (a pseudo-terminal here) the view is drawn in place by rich: the run, its
    # job and every step with its mark, left on screen above the verdict.
    stack.sim.step_delay = 0.1
    code, out = await ghapp(stack, tmp_path, "deploy", "acme/api")
    assert code == 0
    deployment_id = out.strip()
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHAPP_", "ORCHESTRATOR"))}
    env.update(
        ORCHESTRATOR_TOKEN=stack.settings.orchestrator_token or "", TERM="xterm", COLUMNS="120"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghapp", "watch", deployment_id, "--url", stack.base_url,
        cwd=tmp_path, env=env, stdout=secondary, stderr=secondary,
    )
    os.close(secondary)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end closed: the process is gone
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = asyncio.get_running_loop().run_in_executor(None, drain)
    code = await asyncio.wait_for(process.wait(), 60)
    await asyncio.wait_for(reader, 10)
    os.close(primary)
    screen = b"".join(chunks).decode(errors="replace")
    assert code == 1, screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not printed line by line
    assert f"acme/api · deploy.yml@main · {deployment_id}" in screen
    assert "X Deploy on the server" in screen and "✓ " in screen
    assert "failure: " in screen
