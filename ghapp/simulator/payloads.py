"""Pure builders of GitHub's JSON shapes for runs, jobs, deployments and webhook bodies."""

from __future__ import annotations

import base64
from typing import Any

from ghapp.simulator.accounts import (
    ACTIONS_BOT,
    actions_app,
    app_bot,
    node_id,
    organization,
    repository,
    user,
)
from ghapp.simulator.clock import iso_ms_z, iso_offset, iso_z
from ghapp.simulator.model import Annotation
from ghapp.simulator.state import (
    DeploymentState,
    DeploymentStatusState,
    JobState,
    Repository,
    RunState,
    World,
    sha1_hex,
)

Json = dict[str, Any]


def workflow(world: World, repo: Repository, wf_id: int, name: str, path: str) -> Json:
    """A workflow (REST and webhook shapes)."""
    created = iso_z(repo.created)
    return {
        "id": wf_id,
        "node_id": node_id("W", wf_id),
        "name": name,
        "path": path,
        "state": "active",
        "created_at": created,
        "updated_at": created,
        "url": f"{world.api_url}/repos/{repo.full_name}/actions/workflows/{wf_id}",
        "html_url": f"{world.web_url}/{repo.full_name}/blob/{repo.default_branch}/{path}",
        "badge_url": f"{world.web_url}/{repo.full_name}/workflows/{name}/badge.svg",
    }


def head_commit(run: RunState) -> Json:
    """The commit the run is for."""
    author = {"name": "Ada Lovelace", "email": "ada@example.com"}
    return {
        "id": run.head_sha,
        "tree_id": sha1_hex(f"tree:{run.head_sha}"),
        "message": f"Update {run.head_branch}",
        "timestamp": iso_z(run.repo.created),
        "author": author,
        "committer": {"name": "GitHub", "email": "noreply@github.com"},
    }


def workflow_run(world: World, run: RunState) -> Json:
    """A workflow run with every field of the REST and webhook schemas."""
    repo = run.repo
    api = f"{world.api_url}/repos/{repo.full_name}"
    run_api = f"{api}/actions/runs/{run.id}"
    previous = f"{run_api}/attempts/{run.attempt - 1}" if run.attempt > 1 else None
    repo_json = repository(world, repo)
    actor = user(world, run.actors[1]) if 1 in run.actors else app_bot(world)
    triggering = (
        user(world, run.actors[run.attempt]) if run.attempt in run.actors else app_bot(world)
    )
    return {
        "id": run.id,
        "name": run.workflow.name,
        "node_id": node_id("WFR", run.id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.workflow.path,
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": run.event,
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": run.workflow.id,
        "check_suite_id": run.check_suite_id,
        "check_suite_node_id": node_id("CS", run.check_suite_id),
        "url": run_api,
        "html_url": f"{world.web_url}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": iso_z(run.created),
        "updated_at": iso_z(run.updated or run.created),
        "actor": actor,
        "run_attempt": run.attempt,
        "referenced_workflows": [],
        "run_started_at": iso_z(run.run_started or run.created),
        "triggering_actor": triggering,
        "jobs_url": f"{run_api}/jobs",
        "logs_url": f"{run_api}/logs",
        "check_suite_url": f"{api}/check-suites/{run.check_suite_id}",
        "artifacts_url": f"{run_api}/artifacts",
        "cancel_url": f"{run_api}/cancel",
        "rerun_url": f"{run_api}/rerun",
        "previous_attempt_url": previous,
        "workflow_url": f"{api}/actions/workflows/{run.workflow.id}",
        "head_commit": head_commit(run),
        "repository": repo_json,
        "head_repository": repo_json,
        "head_repository_id": repo.id,
    }


def run_workflow(world: World, run: RunState) -> Json:
    """The ``workflow`` object of a run's webhooks."""
    wf = run.workflow
    return workflow(world, run.repo, wf.id, wf.name, wf.path)


def job(world: World, run: RunState, job_state: JobState, *, webhook: bool) -> Json:
    """A job; the REST API writes step times with an offset, webhooks with ``Z``."""
    repo = run.repo
    api = f"{world.api_url}/repos/{repo.full_name}"
    step_time = iso_ms_z if webhook else iso_offset
    started = job_state.started if job_state.started is not None else job_state.created
    steps = [
        {
            "name": step.name,
            "status": step.status,
            "conclusion": step.conclusion,
            "number": step.number,
            "started_at": None if step.started is None else step_time(step.started),
            "completed_at": None if step.completed is None else step_time(step.completed),
        }
        for step in job_state.steps
    ]
    started_runner = job_state.runner_name is not None
    return {
        "id": job_state.id,
        "run_id": run.id,
        "workflow_name": run.workflow.name,
        "head_branch": run.head_branch,
        "run_url": f"{api}/actions/runs/{run.id}",
        "run_attempt": job_state.attempt,
        "node_id": node_id("CR", job_state.id),
        "head_sha": run.head_sha,
        "url": f"{api}/actions/jobs/{job_state.id}",
        "html_url": f"{world.web_url}/{repo.full_name}/actions/runs/{run.id}/job/{job_state.id}",
        "status": job_state.status,
        "conclusion": job_state.conclusion,
        "created_at": iso_z(job_state.created),
        "started_at": iso_z(started),
        "completed_at": None if job_state.completed is None else iso_z(job_state.completed),
        "name": job_state.name,
        "steps": steps,
        "check_run_url": f"{api}/check-runs/{job_state.id}",
        "labels": [job_state.spec.runs_on],
        "runner_id": job_state.runner_id,
        "runner_name": job_state.runner_name,
        "runner_group_id": 2 if started_runner else None,
        "runner_group_name": "GitHub Actions" if started_runner else None,
    }


def annotation(world: World, run: RunState, ann: Annotation) -> Json:
    """A check-run annotation."""
    return {
        "path": ann.path,
        "blob_href": f"{world.web_url}/{run.repo.full_name}/blob/{run.head_sha}/{ann.path}",
        "start_line": ann.start_line,
        "end_line": ann.end_line if ann.end_line is not None else ann.start_line,
        "start_column": None,
        "end_column": None,
        "annotation_level": ann.level,
        "title": ann.title or "",
        "message": ann.message,
        "raw_details": ann.raw_details or "",
    }


def deployment(world: World, dep: DeploymentState) -> Json:
    """A deployment made by a job's ``environment``."""
    api = f"{world.api_url}/repos/{dep.repo.full_name}"
    return {
        "url": f"{api}/deployments/{dep.id}",
        "id": dep.id,
        "node_id": node_id("DE", dep.id),
        "sha": dep.sha,
        "ref": dep.ref,
        "task": "deploy",
        "payload": {},
        "original_environment": dep.environment,
        "environment": dep.environment,
        "description": None,
        "creator": user(world, ACTIONS_BOT, "Bot"),
        "created_at": iso_z(dep.created),
        "updated_at": iso_z(dep.updated),
        "statuses_url": f"{api}/deployments/{dep.id}/statuses",
        "repository_url": api,
        "transient_environment": False,
        "production_environment": dep.environment.lower().startswith("prod"),
        "performed_via_github_app": actions_app(world),
    }


def deployment_status(world: World, dep: DeploymentState, status: DeploymentStatusState) -> Json:
    """One status of a deployment."""
    api = f"{world.api_url}/repos/{dep.repo.full_name}"
    return {
        "url": f"{api}/deployments/{dep.id}/statuses/{status.id}",
        "id": status.id,
        "node_id": node_id("DES", status.id),
        "state": status.state,
        "creator": user(world, ACTIONS_BOT, "Bot"),
        "description": status.description,
        "environment": dep.environment,
        "target_url": status.log_url,
        "log_url": status.log_url,
        "environment_url": status.environment_url,
        "created_at": iso_z(status.created),
        "updated_at": iso_z(status.created),
        "deployment_url": f"{api}/deployments/{dep.id}",
        "repository_url": api,
        "performed_via_github_app": actions_app(world),
    }


def envelope(world: World, repo: Repository, action: str | None, **body: Any) -> Json:
    """A webhook body: the event's objects plus repository, organization, sender, installation."""
    payload: Json = {} if action is None else {"action": action}
    payload.update(body)
    payload["repository"] = repository(world, repo)
    payload["organization"] = organization(world, repo.owner)
    payload["sender"] = app_bot(world)
    legacy = f"023:IntegrationInstallation{repo.installation_id}".encode()
    payload["installation"] = {
        "id": repo.installation_id,
        "node_id": base64.b64encode(legacy).decode(),
    }
    return payload
