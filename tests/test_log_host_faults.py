"""Every deployment reaches a verdict, whatever the log host or the API does while it is gathered.

A stalling, resetting, cutting or redirecting log host gives the verdict with the excerpt
`(log unavailable: <why>)`; past REPORT_TIMEOUT the verdict goes out with what is known."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ghapp.core.deploys import FailureGathered
from ghapp.github import joblogs
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack
from ghapp.work.failures import FailureReporter

REPORT_TIMEOUT = 3.0
# What "a few seconds" past REPORT_TIMEOUT may take on a busy machine.
SLACK = 4.0


def failing_workflow() -> Workflow:
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(
                name="deploy",
                steps=[
                    Step("Set up job"),
                    Step(
                        "Deploy over SSH",
                        command="./deploy.sh production",
                        fail=True,
                        output=["Permission denied (publickey)."],
                        error="Process completed with exit code 255.",
                    ),
                ],
            )
        ],
    )


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    stack = await Stack.start(database_url, retry_base=0.02, report_timeout=REPORT_TIMEOUT)
    stack.sim.add_repository("acme/api", default_branch="main").add_workflow(failing_workflow())
    yield stack
    await stack.close()


async def verdict_of(stack: Stack, timeout: float = 30) -> tuple[dict[str, object], float]:
    """Deploy acme/api; its verdict and the seconds from the request to the callback."""
    started = time.monotonic()
    status, body = await stack.deploy("acme/api")
    assert status == 202, body
    callback = await stack.receiver.wait_for(body["id"], timeout=timeout)
    verdict = callback.deployment["verdict"]
    assert isinstance(verdict, dict)
    return verdict, time.monotonic() - started


def excerpt_of(verdict: dict[str, object]) -> str:
    jobs = verdict["failed_jobs"]
    assert isinstance(jobs, list) and len(jobs) == 1
    excerpt = jobs[0]["log_excerpt"]
    assert isinstance(excerpt, str)
    return excerpt


async def test_stalling_log_host_verdict_at_report_timeout(stack: Stack) -> None:
    stack.sim.faults.stall_logs = True  # one byte a second, for ever
    verdict, elapsed = await verdict_of(stack)
    assert REPORT_TIMEOUT <= elapsed < REPORT_TIMEOUT + SLACK, elapsed
    assert verdict["status"] == "failure" and verdict["reason"] == "failure"
    assert excerpt_of(verdict) == "(log unavailable: not read within REPORT_TIMEOUT (3 s))"
    # The annotation, read before the log, still names the error.
    assert "exit code 255" in str(verdict["summary"])


async def test_each_download_has_its_own_deadline(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(joblogs, "DOWNLOAD_SECONDS", 1.0)
    stack.sim.faults.stall_logs = True
    verdict, _ = await verdict_of(stack)
    excerpt = excerpt_of(verdict)
    # The download's own deadline (1 s) came first, not REPORT_TIMEOUT's (3 s): the excerpt
    # says which one stopped the read, whatever the machine's load added around it.
    assert excerpt.startswith("(log unavailable: the log host 127.0.0.1:"), excerpt
    assert "had not sent the whole log after 1 s" in excerpt


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("reset_logs", "the connection"),
        ("cut_logs", "cut the log short after"),
    ],
)
async def test_reset_and_cut_log_host(stack: Stack, fault: str, why: str) -> None:
    setattr(stack.sim.faults, fault, True)
    verdict, elapsed = await verdict_of(stack)
    excerpt = excerpt_of(verdict)
    assert excerpt.startswith("(log unavailable: ") and why in excerpt, excerpt
    assert "Error(" not in excerpt and "<" not in excerpt  # words, not a Python repr
    assert elapsed < REPORT_TIMEOUT + SLACK
    # Tried again (a reset may be passing), but not for long: 3 attempts, each of which
    # aiohttp may repeat once itself when the connection was a kept-alive one.
    downloads = [r for r in stack.sim.requests if r.origin == "logs"]
    assert 1 < len(downloads) <= 6


async def test_redirect_to_another_host_is_not_followed(stack: Stack) -> None:
    canary = f"{stack.sim.api_url}/canary/log.txt"
    stack.sim.faults.redirect_logs = canary
    verdict, _ = await verdict_of(stack)
    excerpt = excerpt_of(verdict)
    assert excerpt == (
        f"(log unavailable: the log host {stack.sim.log_url.removeprefix('http://')} "
        f"redirected to {canary}; ghapp does not follow the log host's redirects)"
    )
    assert not [r for r in stack.sim.requests if r.path.startswith("/canary")]
    # A redirect is an answer, not a passing failure: asked once.
    assert len([r for r in stack.sim.requests if r.origin == "logs"]) == 1


async def test_redirect_to_a_non_http_url(stack: Stack) -> None:
    stack.sim.faults.redirect_logs = "file:///etc/passwd"
    verdict, _ = await verdict_of(stack)
    excerpt = excerpt_of(verdict)
    assert "redirected to file:///etc/passwd; ghapp does not follow" in excerpt
    assert "root:" not in excerpt


async def test_api_down_while_gathering_verdict_at_report_timeout(stack: Stack) -> None:
    stack.sim.auto = False
    started = time.monotonic()
    status, body = await stack.deploy("acme/api")
    assert status == 202
    # GitHub's API fails from here on; only its webhooks still come.
    stack.sim.faults.server_errors = 10**6
    await stack.sim.finish(body["run"]["id"])
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < REPORT_TIMEOUT + SLACK, elapsed
    verdict = callback.deployment["verdict"]
    assert verdict["status"] == "failure" and verdict["reason"] == "failure"
    assert verdict["failed_jobs"] == []
    assert verdict["summary"] == (
        f"Run {body['run']['id']} ended with failure; its failed jobs could not be read from "
        "GitHub within 3 s (REPORT_TIMEOUT), so this verdict has no job details."
    )


async def test_unexpected_failure_while_gathering_is_tried_again_soon(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FailureReporter.gather
    calls = 0

    async def flaky(self: FailureReporter, *args: Any, **kwargs: Any) -> FailureGathered:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a passing failure (a database hiccup, a bug)")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(FailureReporter, "gather", flaky)
    verdict, elapsed = await verdict_of(stack)
    assert calls == 2
    assert "exit code 255" in excerpt_of(verdict)  # the whole report, not the deadline's
    assert elapsed < REPORT_TIMEOUT  # not left to the sweep (every 10 s)
