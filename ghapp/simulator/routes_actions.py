"""GitHub Actions endpoints: dispatch, workflows, runs, jobs, logs, and workflow files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from ghapp.simulator import artifacts, files, logs, payloads
from ghapp.simulator.clock import parse_time
from ghapp.simulator.http import (
    ApiError,
    Call,
    Router,
    empty_response,
    json_response,
    not_found,
    repo_of,
    require_permission,
    reset_connection,
)
from ghapp.simulator.state import JobState, RunState

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub

NEW_API_VERSION = "2026-03-10"
CONTENTS_DOCS = "https://docs.github.com/rest/repos/contents#get-repository-content"
LOGS_DOCS = "https://docs.github.com/rest/reference/actions#download-job-logs-for-a-workflow-run"
ARTIFACTS_DOCS = "https://docs.github.com/rest/actions/artifacts"
RUN_STATUSES = {"completed", "in_progress", "queued", "requested", "waiting", "pending"}
MAX_INPUTS = 25
# GitHub answers at most this many runs for a listing narrowed by one of these parameters.
FILTERED_CAP = 1000
CAPPED_FILTERS = ("actor", "branch", "check_suite_id", "created", "event", "head_sha", "status")


def _bounds(text: str) -> tuple[int, int]:
    """The first and last second an ISO date (whole day) or date-time stands for."""
    start = parse_time(text)
    return (start, start + 86_399) if len(text.strip()) == 10 else (start, start)


def created_filter(expr: str) -> tuple[int, int]:
    """GitHub's search syntax for ``created``: ``>=X``, ``<X``, ``X..Y``, ``X``."""
    # An unencoded "+" of a UTC offset arrives as a space.
    expr = expr.strip().replace(" ", "+")
    try:
        for op in (">=", "<=", ">", "<"):
            if expr.startswith(op):
                low, high = _bounds(expr[len(op):])
                return {">=": (low, 2**62), ">": (high + 1, 2**62),
                        "<=": (0, high), "<": (0, low - 1)}[op]
        if ".." in expr:
            left, right = expr.split("..", 1)
            low = 0 if left.strip() in ("", "*") else _bounds(left)[0]
            high = 2**62 if right.strip() in ("", "*") else _bounds(right)[1]
            return low, high
        return _bounds(expr)
    except ValueError:
        raise ApiError(422, f"Invalid created parameter: {expr}") from None


def _paginate(
    call: Call, sim: SimulatedGitHub, items: list[Any]
) -> tuple[list[Any], dict[str, str]]:
    per_page, page = call.page()
    chunk = items[(page - 1) * per_page : page * per_page]
    headers: dict[str, str] = {}
    last = max((len(items) + per_page - 1) // per_page, 1)
    if page < last:
        query = dict(call.request.query)
        links = []
        for rel, number in (("next", page + 1), ("last", last)):
            query.update(per_page=str(per_page), page=str(number))
            links.append(f'<{sim.api_url}{call.request.path}?{urlencode(query)}>; rel="{rel}"')
        headers["Link"] = ", ".join(links)
    return chunk, headers


def register(router: Router, sim: SimulatedGitHub) -> None:
    """Add the Actions routes."""
    world = sim.world

    def run_of(call: Call) -> RunState:
        repo = repo_of(world, call)
        run = world.runs.get(call.int_param("run_id"))
        if run is None or run.repo is not repo:
            raise not_found()
        return run

    def job_of(call: Call) -> tuple[RunState, JobState]:
        repo = repo_of(world, call)
        job = world.jobs.get(call.int_param("job_id"))
        if job is None or world.runs[job.run_id].repo is not repo:
            raise not_found()
        return world.runs[job.run_id], job

    @router.route("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches")
    async def dispatch(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        wf = repo.workflow(call.params["workflow_id"])
        if wf is None:
            raise not_found("https://docs.github.com/rest/actions/workflows"
                            "#create-a-workflow-dispatch-event")
        body = await call.body()
        ghes = sim.faults.ghes
        if ghes and "return_run_details" in body:
            raise ApiError(422, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise ApiError(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise ApiError(422, "Invalid request.\n\nFor 'properties/inputs', it is not an object.")
        if len(inputs) > MAX_INPUTS:
            raise ApiError(422, "Invalid request.\n\nFor 'properties/inputs', it has more than "
                           f"{MAX_INPUTS} properties.")
        if not wf.dispatchable:
            raise ApiError(422, "Workflow does not have 'workflow_dispatch' trigger")
        branch = repo.resolve_ref(ref)
        if branch is None:
            raise ApiError(422, f"No ref found for: {ref}")
        specs = wf.input_specs()
        unexpected = [name for name in inputs if name not in specs]
        if unexpected:
            raise ApiError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        for name, spec in specs.items():
            if spec.get("required") and name not in inputs and "default" not in spec:
                raise ApiError(422, f"Required input '{name}' not provided")
        effective = {n: s["default"] for n, s in specs.items() if "default" in s}
        effective.update(inputs)
        run, events = sim.player.create_run(repo, wf, branch, effective)
        sim.launch(run, events)
        if wf.errors_after_dispatch > 0:
            until = time.monotonic() + wf.errors_after_dispatch
            sim.faults.server_errors_until = max(sim.faults.server_errors_until, until)
        if sim.faults.webhooks_before_answer:
            await sim.wait_for_run(run.id)
        if sim.faults.error_after_dispatch > 0:
            sim.faults.error_after_dispatch -= 1
            if call.record is not None:
                call.record.fault = "error_after_dispatch"
            raise ApiError(502, "Server Error")
        if sim.faults.reset_dispatch_answer:
            if call.record is not None:
                call.record.fault = "reset_dispatch_answer"
            reset_connection(call.request)
            return empty_response(500)  # never sent: the connection is gone
        if sim.faults.dispatch_answer_delay > 0:
            if call.record is not None:
                call.record.fault = "dispatch_answer_delay"
            # Held, but not past the simulator's own stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.stopping.wait(), sim.faults.dispatch_answer_delay)
        version = call.request.headers.get("X-GitHub-Api-Version")
        if not ghes and (version == NEW_API_VERSION or body.get("return_run_details") is True):
            return json_response({
                "workflow_run_id": run.id,
                "run_url": f"{sim.api_url}/repos/{repo.full_name}/actions/runs/{run.id}",
                "html_url": f"{world.web_url}/{repo.full_name}/actions/runs/{run.id}",
            })
        return empty_response(204)

    @router.route("GET", "/repos/{owner}/{repo}/actions/workflows")
    async def list_workflows(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        found = [payloads.workflow(world, repo, wf.id, wf.name, wf.path)
                 for wf in repo.workflows.values()]
        return json_response({"total_count": len(found), "workflows": found})

    @router.route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}")
    async def get_workflow(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        wf = repo.workflow(call.params["workflow_id"])
        if wf is None:
            raise not_found()
        return json_response(payloads.workflow(world, repo, wf.id, wf.name, wf.path))

    async def list_runs(call: Call, workflow_id: int | None) -> web.StreamResponse:
        repo = repo_of(world, call)
        runs = [r for r in world.runs.values() if r.repo is repo
                and (workflow_id is None or r.workflow.id == workflow_id)]
        q = call.request.query
        if q.get("event"):
            runs = [r for r in runs if r.event == q["event"]]
        if q.get("branch"):
            runs = [r for r in runs if r.head_branch == q["branch"]]
        if q.get("head_sha"):
            runs = [r for r in runs if r.head_sha == q["head_sha"]]
        if q.get("check_suite_id"):
            runs = [r for r in runs if str(r.check_suite_id) == q["check_suite_id"]]
        status = q.get("status")
        if status in RUN_STATUSES:
            runs = [r for r in runs if r.status == status]
        elif status:
            runs = [r for r in runs if r.conclusion == status]
        if q.get("created"):
            low, high = created_filter(q["created"])
            runs = [r for r in runs if low <= r.created <= high]
        runs.sort(key=lambda r: r.id, reverse=True)
        total = len(runs)
        if any(q.get(name) for name in CAPPED_FILTERS):
            # Pages past the first 1,000 results are empty; total_count still says how many
            # matched, which is how a client learns it must narrow the search.
            runs = runs[:FILTERED_CAP]
        chunk, headers = _paginate(call, sim, runs)
        body = {"total_count": total,
                "workflow_runs": [payloads.workflow_run(world, r) for r in chunk]}
        return json_response(body, headers=headers)

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs")
    async def repo_runs(call: Call) -> web.StreamResponse:
        return await list_runs(call, None)

    @router.route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs")
    async def workflow_runs(call: Call) -> web.StreamResponse:
        wf = repo_of(world, call).workflow(call.params["workflow_id"])
        if wf is None:
            raise not_found()
        return await list_runs(call, wf.id)

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}")
    async def get_run(call: Call) -> web.StreamResponse:
        return json_response(payloads.workflow_run(world, run_of(call)))

    async def cancel(call: Call) -> web.StreamResponse:
        run = run_of(call)
        if run.status == "completed":
            raise ApiError(409, "Cannot cancel a workflow run that is completed.")
        sim.emit(sim.player.cancel(run))
        return json_response({}, 202)

    router.route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel")(cancel)
    router.route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/force-cancel")(cancel)

    async def rerun(call: Call) -> web.StreamResponse:
        run = run_of(call)
        if run.status != "completed":
            raise ApiError(403, "This workflow is already running")
        sim.launch(run, sim.player.rerun(run))
        return json_response({}, 201)

    router.route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun")(rerun)
    router.route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs")(rerun)

    def jobs_answer(call: Call, run: RunState, jobs: list[JobState]) -> web.StreamResponse:
        chunk, headers = _paginate(call, sim, jobs)
        body = {"total_count": len(jobs),
                "jobs": [payloads.job(world, run, j, webhook=False) for j in chunk]}
        return json_response(body, headers=headers)

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs")
    async def run_jobs(call: Call) -> web.StreamResponse:
        run = run_of(call)
        if call.query("filter") == "all":
            jobs = [j for n in sorted(run.attempts) for j in run.attempts[n]]
        else:
            jobs = run.jobs
        return jobs_answer(call, run, jobs)

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt}/jobs")
    async def attempt_jobs(call: Call) -> web.StreamResponse:
        run = run_of(call)
        attempt = call.int_param("attempt")
        if attempt not in run.attempts:
            raise not_found()
        return jobs_answer(call, run, run.attempts[attempt])

    @router.route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}")
    async def get_job(call: Call) -> web.StreamResponse:
        run, job = job_of(call)
        return json_response(payloads.job(world, run, job, webhook=False))

    @router.route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs")
    async def job_logs(call: Call) -> web.StreamResponse:
        _, job = job_of(call)
        job.log_requests += 1
        if job.log_requests <= sim.faults.logs_not_ready:
            if call.record is not None:
                call.record.fault = "logs_not_ready"
            raise not_found(LOGS_DOCS)
        if job.status != "completed":
            raise not_found(LOGS_DOCS)
        expires = int((time.time() + sim.log_url_ttl) * 1000)
        signature = quote(logs.sign(sim.log_key, job.id, expires), safe="")
        location = (f"{sim.log_url}/jobs/{job.id}/signedlogcontent?urlExpires={expires}"
                    f"&urlSigningMethod=HMACV1&urlSignature={signature}")
        response = web.Response(status=302, headers={"Location": location})
        response.headers["Content-Type"] = "text/html;charset=utf-8"
        return response

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts")
    async def run_artifacts(call: Call) -> web.StreamResponse:
        run = run_of(call)
        require_permission(call, "actions", "read", ARTIFACTS_DOCS)
        name = call.query("name")
        found = [a for a in world.artifacts.values()
                 if a.run_id == run.id and (name is None or a.name == name)]
        chunk, headers = _paginate(call, sim, found)
        head = {"repository_id": run.repo.id, "head_repository_id": run.repo.id,
                "head_branch": run.head_branch, "head_sha": run.head_sha}
        body = {"total_count": len(found),
                "artifacts": [artifacts.payload(sim.api_url, run.repo.full_name, a, head)
                              for a in chunk]}
        return json_response(body, headers=headers)

    @router.route("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}")
    async def download_artifact(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        require_permission(call, "actions", "read", ARTIFACTS_DOCS)
        artifact = world.artifacts.get(call.int_param("artifact_id"))
        if (artifact is None or world.runs[artifact.run_id].repo is not repo
                or call.params["archive_format"] != "zip"):
            raise not_found(ARTIFACTS_DOCS)
        if artifact.expired:
            raise ApiError(410, "Artifact has expired", ARTIFACTS_DOCS)
        expires = int((time.time() + sim.log_url_ttl) * 1000)
        signature = artifacts.sign(sim.log_key, artifact.id, expires)
        location = (f"{sim.log_url}/artifacts/{artifact.id}/signedcontent?urlExpires={expires}"
                    f"&urlSigningMethod=HMACV1&urlSignature={signature}")
        return web.Response(status=302, headers={"Location": location})

    @router.route("GET", "/repos/{owner}/{repo}/contents/{path:.+}")
    async def contents(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        require_permission(call, "contents", "read", CONTENTS_DOCS)
        ref = call.query("ref") or repo.default_branch
        branch = repo.resolve_ref(ref)
        if branch is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        path = call.params["path"].strip("/")
        for wf in repo.workflows.values():
            if wf.path == path:
                text = files.workflow_yaml(wf)
                return json_response(files.contents_json(sim.api_url, world.web_url, repo,
                                                         branch, path, text))
        raise not_found(CONTENTS_DOCS)
