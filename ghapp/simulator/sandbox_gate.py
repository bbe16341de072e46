"""The sandbox's gate routes: someone presses "Run workflow" (a foreign run), a reviewer
approves or rejects."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ghapp.simulator.simulator import Simulator

MAX_BODY = 64 * 1024


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


def routes(sim: Simulator, check_repository: Callable[[str], str]) -> list[web.RouteDef]:
    """`POST /sandbox/runs/{owner}/{repo}` `{"workflow", "environment", "actor"}`: a run of the
    workflow triggered by a person, as the "Run workflow" button starts it; `POST
    /sandbox/reviews/{run_id}` `{"state", "reviewer", "comment"}`: a reviewer acts."""

    async def start_run(request: web.Request) -> web.Response:
        try:
            full_name = check_repository(
                f"{request.match_info['owner']}/{request.match_info['repo']}"
            )
        except ValueError as exc:
            return _error(422, "invalid_repository", str(exc))
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _error(413, "too_large", f"at most {MAX_BODY} bytes")
        try:
            data: Any = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(data, dict):
            return _error(422, "invalid_body", "the body must be a JSON object")
        workflow = data.get("workflow", "deploy.yml")
        actor = data.get("actor", "octocat")
        environment = data.get("environment")
        if not isinstance(workflow, str) or not isinstance(actor, str) or not actor:
            return _error(422, "invalid_body", "workflow and actor must be strings")
        if environment is not None and not isinstance(environment, str):
            return _error(422, "invalid_body", "environment must be a string")
        owner, name = full_name.split("/", 1)
        repo = sim.world.repo_of(owner, name)
        if repo is None and sim.on_unknown_repository is not None:
            sim.on_unknown_repository(owner, name)
            repo = sim.world.repo_of(owner, name)
        if repo is None:
            return _error(404, "not_found", f"no repository {full_name}")
        inputs = {"environment": environment} if environment else {}
        try:
            run = await sim.start_foreign_run(repo.full_name, actor, workflow, inputs=inputs)
        except KeyError as exc:
            return _error(404, "not_found", str(exc).strip("'\""))
        return web.json_response(
            {"run_id": run.id, "status": run.status, "actor": actor}, status=201
        )

    async def review(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        body = await request.content.read(MAX_BODY + 1)
        try:
            data: Any = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(data, dict) or not run_id.isdigit():
            return _error(422, "invalid_body", "a JSON object, and a numeric run id")
        state, reviewer = data.get("state"), data.get("reviewer", "octocat")
        comment = data.get("comment", "")
        if state not in ("approved", "rejected") or not isinstance(reviewer, str):
            return _error(422, "invalid_body", "state: approved or rejected; reviewer: a login")
        if not isinstance(comment, str):
            return _error(422, "invalid_body", "comment must be a string")
        if int(run_id) not in sim.runs:
            return _error(404, "not_found", f"no run {run_id}")
        try:
            run = await sim.review(int(run_id), state, reviewer, comment)
        except ValueError as exc:
            return _error(409, "not_waiting", str(exc))
        return web.json_response({"run_id": run.id, "status": run.status})

    return [
        web.post("/sandbox/runs/{owner}/{repo}", start_run),
        web.post("/sandbox/reviews/{run_id}", review),
    ]
