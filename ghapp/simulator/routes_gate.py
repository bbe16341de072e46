"""The App's answer to a protection-rule request: `POST .../deployment_protection_rule`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ghapp.simulator import gate
from ghapp.simulator.accounts import user
from ghapp.simulator.clock import iso_z
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


    @router.route("GET", "/repos/{owner}/{repo}/environments")
    async def environments(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        api = f"{world.api_url}/repos/{repo.full_name}"
        listed = []
        for number, (name, settings) in enumerate(sorted(repo.environments.items()), 1):
            rules: list[dict[str, Any]] = []
            if settings.get("wait_timer"):
                rules.append({"id": number * 10 + 1, "node_id": f"GA_{number}1",
                              "type": "wait_timer", "wait_timer": settings["wait_timer"]})
            if settings.get("reviewers"):
                rules.append({
                    "id": number * 10 + 2, "node_id": f"GA_{number}2", "prevent_self_review": False,
                    "type": "required_reviewers",
                    "reviewers": [_reviewer(login) for login in settings["reviewers"]],
                })
            listed.append({
                "id": 161088000 + number, "node_id": f"EN_{number}", "name": name,
                "url": f"{api}/environments/{name}",
                "html_url": f"{world.web_url}/{repo.full_name}/deployments/activity_log"
                f"?environments_filter={name}",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "protection_rules": rules,
            })
        return json_response({"total_count": len(listed), "environments": listed})

    def _reviewer(login: str) -> dict[str, Any]:
        if "/" in login:
            org, slug = login.split("/", 1)
            return {"type": "Team", "reviewer": {
                "id": world.account_id(login), "slug": slug, "name": slug,
                "html_url": f"{world.web_url}/orgs/{org}/teams/{slug}"}}
        return {"type": "User", "reviewer": user(world, login)}

    @router.route(
        "GET", "/repos/{owner}/{repo}/environments/{name}/deployment_protection_rules"
    )
    async def protection_rules(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        settings = repo.environments.get(call.params["name"])
        if settings is None:
            raise ApiError(404, "Not Found")
        rules = []
        if settings.get("ghapp_rule"):
            slug = world.app_slug
            rules.append({
                "id": 3, "node_id": "IEH37kRlcGxveW1lbnRTdGF0ddiv", "enabled": True,
                "app": {"id": world.app_id, "node_id": "GHT58kRlcGxveW1lbnRTdTY", "slug": slug,
                        "integration_url": f"{world.api_url}/apps/{slug}"},
            })
        return json_response(
            {"total_count": len(rules), "custom_deployment_protection_rules": rules}
        )

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments")
    async def pending_deployments(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        run_id = call.params["run_id"]
        run = world.runs.get(int(run_id)) if run_id.isdigit() else None
        if run is None or run.repo is not repo:
            raise ApiError(404, "Not Found")
        api = f"{world.api_url}/repos/{repo.full_name}"
        pending = []
        for number, (name, state) in enumerate(sorted(run.reviews.items()), 1):
            if state != "pending" or run.status != "waiting":
                continue
            settings = repo.environments.get(name, {})
            pending.append({
                "environment": {"id": 161088000 + number, "node_id": f"EN_{number}",
                                "name": name, "url": f"{api}/environments/{name}",
                                "html_url": f"{world.web_url}/{repo.full_name}/deployments"},
                "wait_timer": settings.get("wait_timer", 0),
                "wait_timer_started_at": iso_z(run.waiting_since or run.created),
                "current_user_can_approve": False,
                "reviewers": [_reviewer(login) for login in settings.get("reviewers", [])],
            })
        return json_response(pending)

    @router.route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/approvals")
    async def approvals(call: Call) -> web.StreamResponse:
        repo = repo_of(world, call)
        run_id = call.params["run_id"]
        run = world.runs.get(int(run_id)) if run_id.isdigit() else None
        if run is None or run.repo is not repo:
            raise ApiError(404, "Not Found")
        api = f"{world.api_url}/repos/{repo.full_name}"
        return json_response([
            {
                "environments": [{"id": 161088000 + number, "node_id": f"EN_{number}",
                                  "name": name, "url": f"{api}/environments/{name}"}],
                "state": state,
                "user": user(world, reviewer),
                "comment": comment,
            }
            for number, (name, state, reviewer, comment) in enumerate(run.approvals, 1)
        ])
