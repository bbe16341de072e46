"""examples/deploy_loop.py: the seed's loop reaches success, alone and against a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ghapp.testing import GhappSandbox


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy_loop.py"


def run_example(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def check_loop(out: str) -> None:
    lines = out.splitlines()
    failed = "deploy -> failure: Job `deploy` failed at step `Deploy on the server`"
    assert lines[0].startswith(failed)
    assert lines[1] == "fix    <- Fix deployment failure. Logs attached."
    assert "ssh: connect to host 203.0.113.7 port 22: Connection refused" in out
    assert "**Cause:** infrastructure" in out  # the verdict's report went to the fix node
    assert any(line.startswith("deploy -> success: https://shop.example.com") for line in lines)
    assert lines[-1] == "done after 2 deploys: success"


def test_the_loop_on_its_own_sandbox() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GHAPP_URL", "GITHUB_API_URL")}
    check_loop(run_example(env))


def test_the_loop_against_a_running_sandbox(ghapp_sandbox: GhappSandbox) -> None:
    check_loop(run_example({**os.environ, **ghapp_sandbox.env()}))
    # The loop's deploys happened on this sandbox: one failure, then one success.
    outcomes = [
        c.deployment.verdict.status for c in ghapp_sandbox.callbacks if c.deployment.verdict
    ]
    assert outcomes == ["failure", "success"]


def test_the_durable_example_is_resumed_by_its_callback() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE.with_name("durable_deploy.py"))],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("the graph waits for the callback")
    assert lines[1] == "resumed by the callback: success https://shop.acme.example"
