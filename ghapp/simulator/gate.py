"""Environments with ghapp's deployment protection rule, as GitHub runs them: a run that targets
one waits (`waiting`), the App is sent `deployment_protection_rule.requested`, and its answer
through the `deployment_callback_url` starts the run or ends it."""

from __future__ import annotations

from typing import Any

from ghapp.simulator import payloads
from ghapp.simulator.accounts import user
from ghapp.simulator.clock import iso_z, now_s
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


def _reviewer(world: World, name: str) -> dict[str, Any]:
    if "/" in name:
        org, slug = name.split("/", 1)
        return {"type": "Team", "reviewer": {
            "id": world.account_id(name), "node_id": f"T_{slug}", "name": slug, "slug": slug,
            "description": "", "privacy": "closed", "notification_setting":
            "notifications_enabled", "permission": "pull", "parent": None,
            "url": f"{world.api_url}/orgs/{org}/teams/{slug}",
            "html_url": f"{world.web_url}/orgs/{org}/teams/{slug}",
            "members_url": f"{world.api_url}/orgs/{org}/teams/{slug}/members{{/member}}",
            "repositories_url": f"{world.api_url}/orgs/{org}/teams/{slug}/repos"}}
    return {"type": "User", "reviewer": user(world, name)}


def review_payload(world: World, run: RunState, environment: str, action: str,
                   approver: str | None = None, comment: str = "") -> Any:
    """`deployment_review.requested|approved|rejected` (GitHub's webhook schemas)."""
    job = next((j for j in run.jobs if j.spec.environment
                and render_for_run(run, j.spec.environment) == environment), run.jobs[0])
    job_run = {
        "id": job.id, "name": job.spec.name, "status": "waiting", "conclusion": None,
        "html_url": f"{world.web_url}/{run.repo.full_name}/actions/runs/{run.id}/job/{job.id}",
        "created_at": iso_z(run.created), "updated_at": iso_z(run.updated or run.created),
        "environment": environment,
    }
    settings = run.repo.environments.get(environment, {})
    body: dict[str, Any] = {
        "workflow_run": payloads.workflow_run(world, run),
        "since": iso_z(run.waiting_since or run.created),
        "reviewers": [_reviewer(world, name) for name in settings.get("reviewers", [])],
    }
    if action == "requested":
        body.update(environment=environment, workflow_job_run=job_run,
                    requestor=user(world, run.actors.get(run.attempt, f"{world.app_slug}[bot]")))
    else:
        # The schema of a decision lists users only.
        body["reviewers"] = [r for r in body["reviewers"] if r["type"] == "User"]
        body.update(approver=user(world, approver or "octocat"), comment=comment,
                    workflow_job_runs=[job_run])
    payload = payloads.envelope(world, run.repo, action, **body)
    if approver is not None:
        payload["sender"] = user(world, approver)
    return payload


def hold(world: World, run: RunState) -> list[Outgoing]:
    """A new attempt that targets gated environments waits; one request per environment, and
    one review request per environment with required reviewers."""
    run.gates = {}
    run.reviews = {}
    run.waiting_since = now_s()
    events = []
    for environment in {render_for_run(run, j.spec.environment)
                        for j in run.jobs if j.spec.environment}:
        if run.repo.environments.get(environment, {}).get("reviewers"):
            run.reviews[environment] = "pending"
            body = review_payload(world, run, environment, "requested")
            events.append(Outgoing("deployment_review", "requested", body, run.id))
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
    if run.gates or run.reviews:
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
    return _release(run)


def review(world: World, player: RunPlayer, run: RunState, environment: str, state: str,
           reviewer: str, comment: str) -> list[Outgoing]:
    """A required reviewer approves or rejects: the webhook, then the run starts or ends."""
    run.reviews[environment] = state
    run.approvals.append((environment, state, reviewer, comment))
    body = review_payload(world, run, environment, state, reviewer, comment)
    events = [Outgoing("deployment_review", state, body, run.id)]
    if state == "rejected":
        return events + player.reject(run, comment or f"Rejected by {reviewer}")
    return events + _release(run)


def _release(run: RunState) -> list[Outgoing]:
    """Once every rule and reviewer approved, the run starts."""
    pending = [*run.gates.values(), *run.reviews.values()]
    if all(value == "approved" for value in pending):
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
