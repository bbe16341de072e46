"""The OpenAPI 3.1 description of ghapp's HTTP interface, assembled from the operations in
`deployment_paths`, `release_paths`, `operation_paths` and the others, and the schemas in
`schemas` (modules of this package)."""

from __future__ import annotations

import copy
import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ghapp import __version__
from ghapp.web.openapi import access_paths, check_paths, gate_paths, release_paths
from ghapp.web.openapi.deployment_paths import orchestrator_paths
from ghapp.web.openapi.operation_paths import DELIVERIES_PATH, deliveries_paths, operations_paths
from ghapp.web.openapi.routes import has_route
from ghapp.web.openapi.schemas import components

OPENAPI_VERSION = "3.1.0"


@functools.lru_cache(maxsize=8)
def _cached_spec(
    webhook_path: str,
    deliveries: bool,
    allowed: tuple[str, ...] | None = None,
    default_url: str | None = None,
) -> dict[str, Any]:
    paths = orchestrator_paths()
    if deliveries:
        paths.update(deliveries_paths())
    paths.update(release_paths.paths())
    paths.update(check_paths.paths())
    paths.update(access_paths.paths())
    paths.update(gate_paths.paths())
    paths.update(operations_paths(webhook_path))
    schemas = components(allowed, default_url)
    if not deliveries:
        for name in ("DeliveryList", "DeliverySummary", "DeliveryDetail"):
            schemas.pop(name, None)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ghapp",
            "version": __version__,
            "summary": "A GitHub App server that deploys on request.",
            "description": (
                "The orchestrator asks for a deployment; ghapp dispatches the repository's "
                "deploy workflow, watches the run, and calls back with a signed verdict "
                "(X-Ghapp-Signature-256, and the Standard Webhooks headers webhook-id, "
                "webhook-timestamp and webhook-signature). Every /api/v1 call needs "
                "`Authorization: Bearer $ORCHESTRATOR_TOKEN`."
            ),
        },
        "tags": [
            {"name": "deployments", "description": "the orchestrator API"},
            {"name": "repositories", "description": "repository set-up"},
            {"name": "releases", "description": "what is live where, rollback, statistics"},
            {"name": "access", "description": "scoped tokens and the audit trail (admin)"},
            {"name": "gate", "description": "the deployment protection rule's decisions"},
            {"name": "operations", "description": "health, readiness, metrics"},
            {"name": "github", "description": "what GitHub calls"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "ORCHESTRATOR_TOKEN",
                }
            },
        },
    }


def build_spec(
    *, webhook_path: str = "/api/github/webhooks", deliveries: bool = False
) -> dict[str, Any]:
    """The OpenAPI document (a fresh copy the caller may change)."""
    return copy.deepcopy(_cached_spec(webhook_path, deliveries))


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json: the description of this server (no token needed to read it).

    Its callback_url pattern is this server's own rule (CALLBACK_ALLOWED_HOSTS, or the origin
    of ORCHESTRATOR_CALLBACK_URL), so a client can check a URL before asking.
    """
    settings = request.app.state.settings
    spec = _cached_spec(
        settings.webhook_path,
        has_route(request.app.routes, DELIVERIES_PATH),
        tuple(settings.callback_allowed_hosts),
        settings.orchestrator_callback_url,
    )
    return JSONResponse(spec)


