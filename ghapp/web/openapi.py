"""`GET /openapi.json`: the OpenAPI 3.1 description of ghapp's HTTP interface.

The operations are described here, the schemas in `ghapp.web.openapi_schemas`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ghapp import __version__
from ghapp.core import models
from ghapp.web import api, openapi_releases
from ghapp.web.openapi_schemas import REF_TEMPLATE, components

OPENAPI_VERSION = "3.1.0"
DELIVERIES_PATH = "/api/v1/deliveries"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
_UNAUTHORIZED = _json("ErrorBody", "missing or wrong bearer token", headers=_WWW_AUTHENTICATE)
_NOT_FOUND = _json("ErrorBody", "no such deployment")
_DEPLOYMENT_ID = {
    "name": "deployment_id",
    "in": "path",
    "required": True,
    "description": "anything else is no deployment (404)",
    "schema": {"type": "string", "pattern": api.DEPLOYMENT_ID_PATTERN, "maxLength": 64},
    "example": "dep_0123456789abcdef01234567",
}
_LATE = _json("ErrorBody", "the body did not arrive within 30 s of the headers")
# createDeployment's answer leads to the deployment's other operations (the stateful phase).
_DEPLOYMENT_LINKS = {
    name: {"operationId": operation, "parameters": {"deployment_id": "$response.body#/id"}}
    for name, operation in (
        ("GetDeployment", "getDeployment"),
        ("CancelDeployment", "cancelDeployment"),
        ("ResendCallback", "resendCallback"),
    )
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    secured: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        **extra,
        "responses": responses,
    }
    operation["security"] = _BEARER if secured else []
    return operation


def _orchestrator_paths() -> dict[str, Any]:
    create = _operation(
        "createDeployment",
        "Deploy a repository: dispatch its workflow; the verdict comes as a callback",
        {
            "202": {
                **_json(
                    "Deployment",
                    "GitHub accepted the dispatch (state dispatched), or refused it (state "
                    "completed, verdict reason dispatch_rejected; its callback is sent too), or "
                    "its answer is late (state dispatched, run null: recorded, followed in the "
                    "background, never dispatched twice); always within 5 s",
                ),
                "links": _DEPLOYMENT_LINKS,
            },
            "200": _json(
                "Deployment",
                "replay: this Idempotency-Key was used with the same body; nothing dispatched",
            ),
            "400": _json("ErrorBody", "the body is not JSON"),
            "401": _UNAUTHORIZED,
            "408": _LATE,
            "409": _json(
                "ErrorBody",
                "this Idempotency-Key was used with another body (error "
                "idempotency_conflict), or concurrency reject found an unfinished deployment "
                "of the environment (error conflict, deployment_id names it; nothing "
                "dispatched)",
            ),
            "413": _json("ErrorBody", "the body is over 1 MiB"),
            "422": _json(
                "ErrorBody",
                "the body breaks the schema, or callback_url's host is not allowed; "
                "`errors` lists the fields",
            ),
            "503": _json(
                "ErrorBody",
                "no dispatch can have reached GitHub (connection refused, 5xx answers, "
                "lookups unanswered within 5 s); nothing was recorded: retry with the same "
                "Idempotency-Key; `message` names what failed and which host",
                headers=_RETRY_AFTER,
            ),
        },
        tag="deployments",
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key with the same body returns the same deployment",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "pattern": api.IDEMPOTENCY_KEY_PATTERN,
                },
            }
        ],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _ref("DeploymentRequest")}},
        },
    )
    listing = _operation(
        "listDeployments",
        "List deployments, newest first",
        {
            "200": _json("DeploymentList", "the deployments"),
            "401": _UNAUTHORIZED,
            "422": _json("ErrorBody", "a query parameter is out of range"),
        },
        tag="deployments",
        description="`metadata.KEY=VALUE` query parameters (any number) keep the deployments "
        "whose metadata has KEY set to VALUE.",
        parameters=[
            {
                "name": "repository",
                "in": "query",
                "schema": {
                    "type": "string",
                    "pattern": models.REPOSITORY_PATTERN,
                    "maxLength": 201,
                },
            },
            {
                "name": "state",
                "in": "query",
                "schema": {"type": "string", "enum": ["dispatched", "in_progress", "completed"]},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": api.LIST_MAX,
                    "default": 50,
                },
            },
        ],
    )
    read = _operation(
        "getDeployment",
        "Read one deployment",
        {"200": _json("Deployment", "the deployment"), "401": _UNAUTHORIZED, "404": _NOT_FOUND},
        tag="deployments",
        parameters=[_DEPLOYMENT_ID],
    )
    report = _operation(
        "getDeploymentReport",
        "The failure report (verdict.report) as Markdown, to hand to a developer or an agent",
        {
            "200": {
                "description": "the report: at most 16 KiB of Markdown",
                "content": {"text/markdown": {"schema": {"type": "string", "maxLength": 16384}}},
            },
            "401": _UNAUTHORIZED,
            "404": _json(
                "ErrorBody",
                "no such deployment (error not_found), or no failure report: not completed, "
                "or a success (error no_report)",
            ),
        },
        tag="deployments",
        parameters=[_DEPLOYMENT_ID],
    )
    cancel = _operation(
        "cancelDeployment",
        "Cancel the deployment's run on GitHub; the verdict (cancelled) follows as usual",
        {
            "202": _json("Deployment", "GitHub took the cancellation"),
            "401": _UNAUTHORIZED,
            "404": _NOT_FOUND,
            "409": _json(
                "ErrorBody",
                "already completed (error already_completed), or the run is not known yet "
                "(error run_unknown: try again in a few seconds)",
            ),
            "502": _json("ErrorBody", "GitHub refused the cancellation"),
            "503": _json("ErrorBody", "GitHub could not be reached", headers=_RETRY_AFTER),
        },
        tag="deployments",
        parameters=[_DEPLOYMENT_ID],
    )
    resend = _operation(
        "resendCallback",
        "Send the verdict's callback again (same X-Ghapp-Delivery)",
        {
            "202": _json("Deployment", "the callback is queued again"),
            "401": _UNAUTHORIZED,
            "404": _NOT_FOUND,
            "409": _json("ErrorBody", "the deployment has no verdict yet"),
        },
        tag="deployments",
        parameters=[_DEPLOYMENT_ID],
    )
    stream = _operation(
        "streamDeploymentEvents",
        "Follow a deployment live: Server-Sent Events, each the whole Deployment",
        {
            "200": {
                "description": "an event stream: the first event is a snapshot (`state`, or "
                "`completed` for a finished deployment); then `state` (state or run changed), "
                "`progress` (a job or step changed), `completed` (the verdict; the stream "
                "ends). Each event's `data` is the Deployment as one JSON line, its `id` "
                "increases for the deployment, also across reconnects. `: keep-alive` comment "
                "lines come at least every 15 s.",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": 'retry: 2000\nid: 3\nevent: progress\ndata: {"id": '
                        '"dep_0123456789abcdef01234567", "state": "in_progress", ...}\n\n',
                    }
                },
            },
            "401": _UNAUTHORIZED,
            "404": _NOT_FOUND,
        },
        tag="deployments",
        description="Authorised by the bearer token or by the operator page's session "
        "cookie. A client that reconnects sends `Last-Event-ID`; it gets a snapshot with a "
        "higher id, so nothing is lost by missing events.",
        parameters=[
            _DEPLOYMENT_ID,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "the id of the last event received (EventSource sends it)",
                "schema": {"type": "string"},
            },
        ],
    )
    deploy_key = _operation(
        "createDeployKey",
        "Generate an SSH deploy key: the private half becomes the Actions secret "
        "DEPLOY_SSH_KEY, the public half is returned",
        {
            "201": _json("DeployKeyCreated", "the key pair exists; the private key is not kept"),
            "401": _UNAUTHORIZED,
            "404": _json("ErrorBody", "no such repository, or the App is not installed on it"),
            "422": _json("ErrorBody", "owner or repo is not a valid name"),
            "502": _json(
                "ErrorBody",
                "GitHub refused to store the secret (often: the installation lacks the "
                "secrets: write permission); `github_status` says what GitHub answered",
            ),
            "503": _json("ErrorBody", "GitHub could not be reached", headers=_RETRY_AFTER),
        },
        tag="repositories",
        parameters=[
            {
                "name": name,
                "in": "path",
                "required": True,
                # GitHub's own rule for owner and repository names.
                "schema": {"type": "string", "pattern": models.NAME_PATTERN, "maxLength": 100},
                "example": example,
            }
            for name, example in (("owner", "acme"), ("repo", "shop"))
        ],
    )
    return {
        "/api/v1/deployments": {"post": create, "get": listing},
        "/api/v1/deployments/{deployment_id}": {"get": read},
        "/api/v1/deployments/{deployment_id}/events": {"get": stream},
        "/api/v1/deployments/{deployment_id}/report": {"get": report},
        "/api/v1/deployments/{deployment_id}/cancel": {"post": cancel},
        "/api/v1/deployments/{deployment_id}/callback": {"post": resend},
        "/api/v1/repos/{owner}/{repo}/deploy-key": {"post": deploy_key},
    }


def _deliveries_paths() -> dict[str, Any]:
    listing = _operation(
        "listDeliveries",
        "Webhook deliveries ghapp received recently (its local log), newest first",
        {
            "200": _json("DeliveryList", "the deliveries"),
            "401": _UNAUTHORIZED,
            "422": _json("ErrorBody", "a query parameter is out of range"),
        },
        tag="operations",
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
            },
            *(
                {
                    "name": name,
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 100, "pattern": "^[^\\x00]*$"},
                }
                for name in ("event", "outcome")
            ),
            {
                "name": "signature",
                "in": "query",
                "schema": {"type": "string", "enum": ["ok", "bad", "missing", "unchecked"]},
            },
        ],
    )
    one = _operation(
        "getDelivery",
        "One logged delivery in full, by the log's id or by X-GitHub-Delivery",
        {
            "200": _json("DeliveryDetail", "the delivery"),
            "401": _UNAUTHORIZED,
            "404": _json("ErrorBody", "no such delivery in the local log"),
        },
        tag="operations",
        parameters=[
            {
                "name": "delivery_id",
                "in": "path",
                "required": True,
                "description": "anything longer is in no log (404)",
                "schema": {"type": "string", "maxLength": 100, "pattern": "^[^\\x00]+$"},
            }
        ],
    )
    return {
        DELIVERIES_PATH: {"get": listing},
        DELIVERIES_PATH + "/{delivery_id}": {"get": one},
    }


def _operations_paths(webhook_path: str) -> dict[str, Any]:
    webhook = _operation(
        "receiveWebhook",
        "GitHub's webhook deliveries (signed with WEBHOOK_SECRET, X-Hub-Signature-256)",
        {
            "200": _json("WebhookAnswer", "processed, or a delivery seen before"),
            "202": _json("WebhookAnswer", "accepted; an event ghapp ignores"),
            "400": _json(
                "WebhookAnswer", "X-GitHub-Event or X-GitHub-Delivery missing, or not JSON"
            ),
            "401": _json("WebhookAnswer", "X-Hub-Signature-256 missing or wrong"),
            "408": _json("WebhookAnswer", "the body did not arrive within 30 s of the headers"),
            "413": _json("WebhookAnswer", "over 25 MiB"),
            "500": _json("WebhookAnswer", "handling failed: GitHub lists it failed, redeliverable"),
        },
        tag="github",
        secured=False,
        parameters=[
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
            for name in ("X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery")
        ],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    )
    return {
        webhook_path: {"post": webhook},
        "/healthz": {
            "get": _operation(
                "healthz",
                "Liveness: the process answers",
                {"200": _json("Health", "alive")},
                tag="operations",
                secured=False,
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Readiness: the database answers and the App key loads",
                {"200": _json("Readiness", "ready"), "503": _json("Readiness", "not ready")},
                tag="operations",
                secured=False,
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="operations",
                secured=False,
            )
        },
    }


@functools.lru_cache(maxsize=8)
def _cached_spec(
    webhook_path: str,
    deliveries: bool,
    allowed: tuple[str, ...] | None = None,
    default_url: str | None = None,
) -> dict[str, Any]:
    paths = _orchestrator_paths()
    if deliveries:
        paths.update(_deliveries_paths())
    paths.update(
        openapi_releases.paths(_operation, _json, _ref, _UNAUTHORIZED, _RETRY_AFTER)
    )
    paths.update(_operations_paths(webhook_path))
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
                "(X-Ghapp-Signature-256). Every /api/v1 call needs "
                "`Authorization: Bearer $ORCHESTRATOR_TOKEN`."
            ),
        },
        "tags": [
            {"name": "deployments", "description": "the orchestrator API"},
            {"name": "repositories", "description": "repository set-up"},
            {"name": "releases", "description": "what is live where, rollback, statistics"},
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


def has_route(routes: list[BaseRoute], path: str, method: str = "GET") -> bool:
    """Whether an app's routes serve `method path` (a route template, as in the spec)."""
    return any(
        isinstance(route, Route) and route.path == path and method in (route.methods or ())
        for route in routes
    )


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


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
