"""The OpenAPI description of `GET /api/v1/check/{owner}/{repo}` (see check_api)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ghapp.core import validation
from ghapp.core.setup_checks import SetupReport
from ghapp.web.check_api import ENVIRONMENT_MAX, ENVIRONMENT_PATTERN, WORKFLOW_PATTERN
from ghapp.web.openapi.parts import UNAUTHORIZED, describe, json_answer

MODELS: list[tuple[type[BaseModel], Any]] = [(SetupReport, "serialization")]


def paths() -> dict[str, Any]:
    """The path item of the set-up checks."""
    names = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": validation.NAME_PATTERN, "maxLength": 100},
            "example": example,
        }
        for name, example in (("owner", "acme"), ("repo", "shop"))
    ]
    query = [
        {
            "name": "workflow",
            "in": "query",
            "description": "the deploy workflow's file",
            "schema": {"type": "string", "pattern": WORKFLOW_PATTERN, "default": "deploy.yml"},
        },
        {
            "name": "environment",
            "in": "query",
            "description": "the environment to deploy to (its secrets count for deploy_key)",
            "schema": {
                "type": "string", "pattern": ENVIRONMENT_PATTERN, "maxLength": ENVIRONMENT_MAX
            },
        },
    ]
    check = describe(
        "checkSetup",
        "The set-up checks of `ghapp check`: key and JWT, installation and permissions, the "
        "workflow, DEPLOY_SSH_KEY, recent webhook deliveries, the orchestrator's callback URL",
        {
            "200": json_answer(
                "SetupReport", "every check, passed or not (`ok` says whether all passed)"
            ),
            "401": UNAUTHORIZED,
            "422": json_answer("ErrorBody", "owner, repo, workflow or environment is malformed"),
        },
        tag="repositories",
        description="Asks GitHub (with the App's JWT and an installation token) and sends "
        "ORCHESTRATOR_CALLBACK_URL a signed `X-Ghapp-Event: ping`. Answers 200 whatever the "
        "checks find; a check that failed says what to do in `fix`.",
        parameters=[*names, *query],
    )
    return {"/api/v1/check/{owner}/{repo}": {"get": check}}
