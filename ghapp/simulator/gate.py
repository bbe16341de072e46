"""Environments with ghapp's deployment protection rule, as GitHub runs them: a run that targets
one waits (`waiting`), the App is sent `deployment_protection_rule.requested`, and its answer
through the `deployment_callback_url` starts the run or ends it."""

from __future__ import annotations

from typing import Any

from ghapp.simulator import payloads
from ghapp.simulator.accounts import user
from ghapp.simulator.clock import now_s
from ghapp.simulator.runs import Outgoing, RunPlayer, render_for_run
from ghapp.simulator.state import DeploymentState, RunState, World


def gated_environments(run: RunState) -> list[tuple[str, int]]:
    """The environments (and the job of each) of the run that have ghapp's rule enabled."""
    found: dict[str, int] = {}
    for job in run.jobs:
        if job.spec.environment:
            name = render_for_run(run, job.spec.environment)
            if run.repo.environments.get(name, {}).get("ghapp_rule") and name not in found:
                found[name] = job.id
    return list(found.items())


def callback_url(world: World, run: RunState) -> str:
    """The `deployment_callback_url` of a run."""
    api = f"{world.api_url}/repos/{run.repo.full_name}"
    return f"{api}/actions/runs/{run.id}/deployment_protection_rule"


def request_payload(world: World, run: RunState, environment: str, dep: DeploymentState) -> Any:
    """`deployment_protection_rule.requested` (GitHub's webhook schema)."""
    body = payloads.envelope(
        world, run.repo, "requested",
        environment=environment,
        event=run.event,
        sha=run.head_sha,
        ref=f"refs/heads/{run.head_branch}",
        deployment_callback_url=callback_url(world, run),
        deployment=payloads.deployment(world, dep),
        pull_requests=[],
    )
    if run.attempt in run.actors:
        body["sender"] = user(world, run.actors[run.attempt])
    return body


def hold(world: World, run: RunState) -> list[Outgoing]:
    """A new attempt that targets gated environments waits; one request per environment."""
    run.gates = {}
    events = []
    for environment, job_id in gated_environments(run):
        dep = DeploymentState(
            id=next(world.ids.deployment), repo=run.repo, sha=run.head_sha,
            ref=run.head_branch, environment=environment, created=now_s(),
            run_id=run.id, job_id=job_id,
        )
        world.deployments[dep.id] = dep
        run.gate_deployments[environment] = dep.id
        run.gates[environment] = "pending"
        body = request_payload(world, run, environment, dep)
        events.append(Outgoing("deployment_protection_rule", "requested", body, run.id))
    if run.gates:
        run.status = "waiting"
        for job in run.jobs:
            job.status = "waiting"
    return events


def answer(player: RunPlayer, run: RunState, environment: str, state: str,
           comment: str) -> list[Outgoing]:
    """The App's answer: the last approval lets the run start, a rejection ends it."""
    run.gates[environment] = state
    if state == "rejected":
        return player.reject(run, comment or f"Rejected by a protection rule of {environment}")
    if all(value == "approved" for value in run.gates.values()):
        run.status = "queued"
        run.run_started = max(run.run_started, now_s())
        for job in run.jobs:
            if job.status == "waiting":
                job.status = "queued"
    return []


def resend_as(world: World, run: RunState, event: Outgoing) -> Outgoing:
    """A webhook of a run a person started, built before its actor was known: the person as
    the run's actor and the delivery's sender."""
    login = run.actors.get(run.attempt)
    if login is not None:
        person = user(world, login)
        event.payload["sender"] = person
        if isinstance(event.payload.get("workflow_run"), dict):
            event.payload["workflow_run"]["actor"] = person
            event.payload["workflow_run"]["triggering_actor"] = person
    return event
