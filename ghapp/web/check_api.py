"""GET /api/v1/check/{owner}/{repo}: the set-up checks of `ghapp check`, as JSON."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core.validation import valid_name
from ghapp.web.authz import authorize
from ghapp.web.http import error, services_of

WORKFLOW_PATTERN = r"^[A-Za-z0-9._-]{1,100}\.ya?ml$"
# Printable, not blank (its length, 1 to 255, is checked beside it: ENVIRONMENT_MAX).
ENVIRONMENT_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
ENVIRONMENT_MAX = 255


async def check_setup(request: Request) -> Response:
    """Run every set-up check for the repository with this server's settings."""
    # Admin only: today the bearer token is the only credential (ORCHESTRATOR_TOKEN).
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    owner, repo = request.path_params["owner"], request.path_params["repo"]
    workflow = request.query_params.get("workflow", "deploy.yml")
    environment = request.query_params.get("environment")
    problems = [
        {"field": name, "message": "not a GitHub name"}
        for name, value in (("owner", owner), ("repo", repo))
        if not valid_name(value)
    ]
    if not re.fullmatch(WORKFLOW_PATTERN, workflow):
        problems.append({"field": "workflow", "message": "not a workflow file name"})
    if environment is not None and (
        len(environment) > ENVIRONMENT_MAX or not re.fullmatch(ENVIRONMENT_PATTERN, environment)
    ):
        problems.append({"field": "environment", "message": "not an environment name"})
    if problems:
        return error(
            422,
            "invalid_request",
            "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            errors=problems,
        )
    # Loaded at the first check: an idle server never reads YAML or the manifest.
    from ghapp import manifest
    from ghapp.work.setup_checks import CheckTarget, run_checks

    services = services_of(request)
    result = await run_checks(
        CheckTarget(f"{owner}/{repo}", workflow, environment),
        services.settings,
        github=services.github,
        session=services.session.get(),
        permissions=manifest.permissions(),
    )
    return JSONResponse(result.model_dump())


routes = [Route("/api/v1/check/{owner}/{repo}", check_setup, methods=["GET"])]
