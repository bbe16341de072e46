"""Causes end to end: a failing step printing a real message -> the callback's `cause`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack, serve_settings

SETUP = [Step("Set up job"), Step("Check out", command="actions/checkout@v4")]

# One repository per category; each failing step prints what the real tool prints
# (tests/data/causes_corpus.yml names the sources).
FAILING: dict[str, tuple[str, Step]] = {
    "acme/infra": (
        "infrastructure",
        Step(
            "Deploy on the server",
            command="ssh deploy@203.0.113.10 docker compose up -d",
            fail=True,
            output=["ssh: connect to host 203.0.113.10 port 22: Connection refused"],
            error="Process completed with exit code 255.",
        ),
    ),
    "acme/config": (
        "configuration",
        Step(
            "Check configuration",
            fail=True,
            output=["##[error]secret DEPLOY_SSH_KEY is not set"],
            error="Process completed with exit code 1.",
        ),
    ),
    "acme/code": (
        "code",
        Step(
            "Build and push the image",
            command="docker/build-push-action@v7",
            fail=True,
            output=[
                "#11 4.210 src/cart.ts(42,7): error TS2322: Type 'string' is not assignable "
                "to type 'number'.",
                'ERROR: failed to solve: process "/bin/sh -c npm run build" did not complete '
                "successfully: exit code: 2",
            ],
            error="buildx failed with: ERROR: failed to solve: process \"/bin/sh -c npm run "
            'build" did not complete successfully: exit code: 2',
        ),
    ),
    "acme/flaky": (
        "transient",
        Step(
            "Build and push the image",
            command="docker/build-push-action@v7",
            fail=True,
            output=[
                "ERROR: failed to push ghcr.io/acme/flaky:4f2c: unexpected status from PUT "
                "request to https://ghcr.io/v2/acme/flaky/manifests/4f2c: "
                "503 Service Unavailable",
            ],
            error="buildx failed with: ERROR: failed to push ghcr.io/acme/flaky:4f2c",
        ),
    ),
    "acme/stopped": ("cancelled", Step("Deploy on the server", cancelled=True)),
    "acme/mystery": (
        "unknown",
        Step("Notify the team", fail=True, error="Process completed with exit code 3."),
    ),
}


def _workflow(step: Step) -> Workflow:
    job = Job(name="deploy", steps=[*SETUP, step])
    return Workflow(file="deploy.yml", name="Deploy", jobs=[job])


async def _start(database_url: str, **settings: object) -> Stack:
    stack = await Stack.start(database_url, retry_base=0.02, **settings)
    for repository, (_, step) in FAILING.items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(_workflow(step))
    stack.sim.add_repository("acme/fine", default_branch="main").add_workflow(
        Workflow(file="deploy.yml", name="Deploy", jobs=[Job(name="deploy", steps=SETUP)])
    )
    return stack


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    stack = await _start(database_url)
    yield stack
    await stack.close()


async def _report(stack: Stack, deployment_id: str) -> tuple[int, str, str]:
    assert stack.session is not None
    async with stack.session.get(
        f"{stack.base_url}/api/v1/deployments/{deployment_id}/report", headers=stack.auth
    ) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


@pytest.mark.parametrize("repository", sorted(FAILING))
async def test_the_callback_names_the_cause(stack: Stack, repository: str) -> None:
    category, step = FAILING[repository]
    _, body = await stack.deploy(repository)
    callback = await stack.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    cause = verdict["cause"]
    assert cause["category"] == category, cause
    assert cause["retryable"] is (category == "transient")
    assert cause["hint"] and cause["rule"]
    if category not in ("cancelled", "unknown"):
        assert cause["evidence"] in "\n".join(step.output)
    # The report is the same on the callback and on its own route, as Markdown.
    status, content_type, text = await _report(stack, body["id"])
    assert status == 200 and content_type.startswith("text/markdown")
    assert text == verdict["report"]
    assert text.startswith(f"# Deploy of `{repository}@main` to `production` ")
    assert f"**Cause:** {category} " in text and cause["hint"] in text
    assert "https://github.com/" in text and "/actions/runs/" in text
    assert len(text.encode()) <= 16 * 1024


async def test_a_success_has_no_cause_and_no_report(stack: Stack) -> None:
    _, body = await stack.deploy("acme/fine")
    callback = await stack.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert verdict["status"] == "success"
    assert verdict["cause"] is None and verdict["report"] is None
    status, _, text = await _report(stack, body["id"])
    assert status == 404 and "no_report" in text


async def test_a_rejected_dispatch_quotes_githubs_message_as_evidence(stack: Stack) -> None:
    status, body = await stack.deploy("acme/infra", workflow="missing.yml")
    assert status == 202
    cause = body["verdict"]["cause"]
    assert body["verdict"]["reason"] == "dispatch_rejected"
    assert cause["category"] == "configuration"
    assert cause["evidence"] and cause["evidence"] in body["verdict"]["summary"]
    assert not cause["evidence"].startswith("GitHub refused")


async def test_a_user_rule_overrides_a_built_in_one(database_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "causes.yml"
    rules.write_text(
        "- id: acme.bastion-only\n"
        "  category: configuration\n"
        "  step: Deploy on the server\n"
        "  log: 'port 22: Connection refused'\n"
        "  hint: Our servers only take SSH through the bastion; set vars.DEPLOY_HOST to it.\n"
    )
    stack = await _start(database_url, cause_rules_path=rules)
    try:
        _, body = await stack.deploy("acme/infra")
        cause = (await stack.receiver.wait_for(body["id"])).deployment["verdict"]["cause"]
        assert (cause["category"], cause["rule"]) == ("configuration", "acme.bastion-only")
        _, body = await stack.deploy("acme/flaky")  # built-in rules still apply after it
        cause = (await stack.receiver.wait_for(body["id"])).deployment["verdict"]["cause"]
        assert cause["category"] == "transient"
    finally:
        await stack.close()


def test_a_malformed_rules_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "causes.yml"
    rules.write_text("- id: broken\n  category: code\n  hint: h\n  log: '[unclosed'\n")
    # Every other setting is good, so the rules file is the one problem `serve` reports.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CAUSE_RULES_PATH": str(rules),
           **serve_settings()}
    result = subprocess.run(
        [sys.executable, "-m", "ghapp", "serve"],
        env={**env, "PYTHONPATH": str(Path(__file__).parent.parent)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"ghapp: CAUSE_RULES_PATH: {rules}: rule 1 (broken): 'log'")
    assert "Traceback" not in result.stderr
