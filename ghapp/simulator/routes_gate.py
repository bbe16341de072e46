"""The App's answer to a protection-rule request: `POST .../deployment_protection_rule`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ghapp.simulator import gate
from ghapp.simulator.http import (
    ApiError,
    Call,
    Router,
    empty_response,
    json_response,
    repo_of,
)

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub


def register(router: Router, sim: SimulatedGitHub) -> None:
    """`POST /repos/{o}/{r}/actions/runs/{run_id}/deployment_protection_rule` (App only)."""
    world = sim.world

    @router.route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule")
    async def review(call: Call) -> web.StreamResponse:
        run_id = call.params["run_id"]
        run = world.runs.get(int(run_id)) if run_id.isdigit() else None
        if run is None or run.repo.full_name.lower() != (
            f"{call.params['owner']}/{call.params['repo']}".lower()
        ):
            raise ApiError(404, "Not Found")
        body = await call.body()
        environment, state = body.get("environment_name"), body.get("state")
        comment = body.get("comment") or ""
        if not isinstance(environment, str) or state not in ("approved", "rejected"):
            raise ApiError(422, "Invalid request.\n\n\"environment_name\" and \"state\" needed.")
        if not isinstance(comment, str) or len(comment) > 1024:
            raise ApiError(422, "Invalid request.\n\n\"comment\" is too long (1024).")
        if run.gates.get(environment) != "pending" or run.status != "waiting":
            raise ApiError(422, "No pending deployment protection rule for this environment.")
        sim.answers.append((run.id, environment, state, comment))
        sim.emit(gate.answer(sim.player, run, environment, state, comment))
        return empty_response(204)

    @router.route("GET", "/repos/{owner}/{repo}/commits/{ref:.+}")
    async def commit(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        ref = call.params["ref"]
        branch = repo.resolve_ref(ref)
        if branch is not None:
            sha = repo.head_sha(branch)
        elif len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            sha = ref
        else:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        api = f"{world.api_url}/repos/{repo.full_name}"
        return json_response({
            "sha": sha,
            "node_id": f"C_{sha[:20]}",
            "url": f"{api}/commits/{sha}",
            "html_url": f"{world.web_url}/{repo.full_name}/commit/{sha}",
            "commit": {"message": f"Update {branch or sha}", "tree": {"sha": sha}},
            "parents": [],
        })

