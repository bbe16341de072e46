"""The App's answer to a protection-rule request: `POST .../deployment_protection_rule`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ghapp.simulator import gate
from ghapp.simulator.http import ApiError, Call, Router, empty_response

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
