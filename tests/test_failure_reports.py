"""Failure verdicts end to end: the failing step's log excerpt, annotations and summary."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ghapp.simulator import Annotation, Job, Step, Workflow
from ghapp.simulator.stack import Stack

NOISE = [f"Installing dependency {n} of 40 ... done" for n in range(40)]


def failing_workflow(**job_options: object) -> Workflow:
    return Workflow(
        file="deploy.yml",
        name="Deploy",
        jobs=[
            Job(
                name="deploy",
                steps=[
                    Step("Set up job"),
                    Step("Install", command="npm ci", output=NOISE),
                    Step(
                        "Deploy over SSH",
                        command="./deploy.sh production",
                        fail=True,
                        output=["Connecting to 203.0.113.7", "Permission denied (publickey)."],
                        error="Process completed with exit code 255.",
                        annotations=[Annotation("Low disk space on runner", level="warning")],
                    ),
                    Step("Notify"),
                ],
                **job_options,  # type: ignore[arg-type]
            )
        ],
    )


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    stack = await Stack.start(database_url, retry_base=0.02)
    stack.sim.add_repository("acme/shop", default_branch="main").add_workflow(failing_workflow())
    yield stack
    await stack.close()


async def test_callback_carries_excerpt_annotations_and_summary(stack: Stack) -> None:
    _, body = await stack.deploy("acme/shop")
    callback = await stack.receiver.wait_for(body["id"])
    verdict = callback.deployment["verdict"]
    assert verdict["summary"] == (
        "Job `deploy` failed at step `Deploy over SSH`: `Process completed with exit code 255.`"
    )
    [job] = verdict["failed_jobs"]
    excerpt = job["log_excerpt"]
    assert "Permission denied (publickey)." in excerpt
    assert "##[error]Process completed with exit code 255." in excerpt
    assert "./deploy.sh production" in excerpt
    # None of the earlier steps' lines, no timestamps, no ANSI.
    assert "Installing dependency" not in excerpt
    assert "\x1b" not in excerpt and "\r" not in excerpt
    assert not any(line[:4].isdigit() and "T" in line[:11] for line in excerpt.splitlines())
    levels = [a["annotation_level"] for a in job["annotations"]]
    assert levels[0] == "failure" and "warning" in levels
    assert levels == sorted(levels, key=["failure", "warning", "notice"].index)
    # The token never went to the log host.
    assert stack.sim.log_auth_violations == 0
    log_requests = [r for r in stack.sim.requests if r.origin == "logs"]
    assert log_requests and all(
        "authorization" not in map(str.lower, r.headers) for r in log_requests
    )


async def test_logs_not_yet_available_are_waited_for(stack: Stack) -> None:
    stack.sim.faults.logs_not_ready = 2
    _, body = await stack.deploy("acme/shop")
    callback = await stack.receiver.wait_for(body["id"])
    excerpt = callback.deployment["verdict"]["failed_jobs"][0]["log_excerpt"]
    assert "##[error]Process completed with exit code 255." in excerpt
    assert any(r.fault == "logs_not_ready" for r in stack.sim.requests)


async def test_expired_signed_url_is_fetched_again(stack: Stack) -> None:
    stack.sim.log_url_ttl = -1  # every signed URL is already expired when used
    _, body = await stack.deploy("acme/shop")
    stack.sim.log_url_ttl = 60
    callback = await stack.receiver.wait_for(body["id"])
    excerpt = callback.deployment["verdict"]["failed_jobs"][0]["log_excerpt"]
    assert "exit code 255" in excerpt
    assert stack.sim.api_calls(path="/logs") >= 1


async def test_log_that_never_comes_still_gives_a_verdict(stack: Stack) -> None:
    stack.sim.faults.logs_not_ready = 1000
    _, body = await stack.deploy("acme/shop")
    callback = await stack.receiver.wait_for(body["id"], timeout=30)
    verdict = callback.deployment["verdict"]
    assert verdict["status"] == "failure"
    assert verdict["failed_jobs"][0]["log_excerpt"].startswith("(log unavailable")
    # The annotation still tells the developer what failed.
    assert "exit code 255" in verdict["summary"]


async def test_cancelled_and_timed_out_runs_say_so(stack: Stack) -> None:
    stack.sim.add_repository("acme/slow", default_branch="main").add_workflow(
        Workflow(
            file="deploy.yml",
            name="Deploy",
            timeout=True,
            jobs=[Job(name="deploy", steps=[Step("Set up job"), Step("Run tests")])],
        )
    )
    _, body = await stack.deploy("acme/slow")
    verdict = (await stack.receiver.wait_for(body["id"])).deployment["verdict"]
    assert verdict["reason"] == "timed_out"
    assert verdict["summary"].startswith("Job `deploy` timed out at step `Run tests`")
    assert "exceeded the maximum execution time" in verdict["summary"]

    stack.sim.auto = False
    _, body = await stack.deploy("acme/shop")
    await stack.sim.advance(body["run"]["id"])  # in progress
    await stack.sim.cancel_run(body["run"]["id"])
    verdict = (await stack.receiver.wait_for(body["id"])).deployment["verdict"]
    assert verdict["reason"] == "cancelled"
    assert "was cancelled" in verdict["summary"]


async def test_matrix_jobs_named_with_their_values(stack: Stack) -> None:
    stack.sim.add_repository("acme/matrix", default_branch="main").add_workflow(
        Workflow(
            file="deploy.yml",
            name="Deploy",
            jobs=[
                Job(
                    name=f"deploy ({region}, 3.11)",
                    steps=[Step("Set up job"), Step("Push", fail=True, error=f"{region} down")],
                )
                for region in ("eu", "us", "ap")
            ],
        )
    )
    _, body = await stack.deploy("acme/matrix")
    verdict = (await stack.receiver.wait_for(body["id"])).deployment["verdict"]
    names = sorted(job["name"] for job in verdict["failed_jobs"])
    assert names == ["deploy (ap, 3.11)", "deploy (eu, 3.11)", "deploy (us, 3.11)"]
    assert "(2 other jobs failed too.)" in verdict["summary"]
    for job in verdict["failed_jobs"]:
        region = job["name"].split(" (")[1].split(",")[0]
        assert f"##[error]{region} down" in job["log_excerpt"]
