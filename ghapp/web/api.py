"""The orchestrator API: ask for a deployment, read it, list them."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gidgethub
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core.models import DeploymentList, DeploymentRequest, check_metadata
from ghapp.github.client import GitHubUnavailable
from ghapp.store import IdempotencyConflict
from ghapp.web import launch

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.api")
MAX_BODY = 1024 * 1024


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """An error answer: `{"error", "message"}` plus details."""
    headers = extra.pop("headers", None)
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def authorized(request: Request) -> bool:
    expected = services_of(request).settings.orchestrator_token or ""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def unauthorized() -> JSONResponse:
    return error(
        401,
        "unauthorized",
        "missing or wrong bearer token (Authorization: Bearer $ORCHESTRATOR_TOKEN)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def callback_allowed(url: str, allowed: list[str]) -> bool:
    """Whether a callback URL's host (and port, where the entry names one) is allowed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for entry in allowed:
        wanted = urlsplit("//" + entry.strip().lower())
        try:
            wanted_port = wanted.port
        except ValueError:
            continue
        if wanted.hostname == host and wanted_port in (None, port):
            return True
    return False


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors()
    ]


async def create_deployment(request: Request) -> Response:
    """POST /api/v1/deployments: dispatch the workflow and answer 202 with the Deployment."""
    if not authorized(request):
        return unauthorized()
    services = services_of(request)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return error(413, "too_large", f"the body is over {MAX_BODY} bytes")
    try:
        # Strict: no NaN or Infinity, no lone surrogates; they cannot be stored or sent back.
        payload = from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        return error(400, "invalid_json", f"the body is not JSON: {exc}")
    try:
        body = DeploymentRequest.model_validate(payload)
    except ValidationError as exc:
        return error(
            422, "invalid_request", "the body breaks the schema", errors=_field_errors(exc)
        )
    settings = services.settings
    callback_url = body.callback_url or settings.orchestrator_callback_url
    if callback_url is None:
        return error(
            422,
            "invalid_request",
            "no callback_url in the request and no ORCHESTRATOR_CALLBACK_URL set",
            errors=[{"field": "callback_url", "message": "required"}],
        )
    if not callback_allowed(callback_url, settings.callback_allowed_hosts):
        return error(
            422,
            "invalid_request",
            "callback_url's host is not in CALLBACK_ALLOWED_HOSTS",
            errors=[{"field": "callback_url", "message": "host not allowed"}],
        )
    key = request.headers.get("idempotency-key")
    if key is not None and (len(key) > 200 or not key.isprintable()):
        return error(
            422, "invalid_request", "Idempotency-Key must be at most 200 printable characters"
        )
    body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()

    async def plan() -> launch.Plan:
        return launch.Plan(body, callback_url)

    return await start_answer(services, key, body_hash, plan)


async def start_answer(
    services: Services,
    key: str | None,
    body_hash: str,
    plan: Callable[[], Awaitable[launch.Plan]],
) -> Response:
    """Start a deployment and answer as DESIGN.md says: 202, 200 on a repeat, 409, 503."""
    try:
        started = await launch.start(services, key, body_hash, plan)
    except IdempotencyConflict:
        return error(
            409, "idempotency_conflict", "this Idempotency-Key was used with another body"
        )
    except launch.Conflict as exc:
        return error(409, "conflict", str(exc), deployment_id=exc.deployment_id)
    except launch.NoRelease as exc:
        return error(409, "no_release", str(exc))
    except GitHubUnavailable as exc:
        log.warning("GitHub unavailable for dispatch", extra={"error": str(exc)})
        return error(
            503,
            "github_unavailable",
            f"GitHub could not take the dispatch: {exc}",
            headers={"Retry-After": "30"},
        )
    status = 200 if started.repeat else 202
    return JSONResponse(started.record.public().model_dump(mode="json"), status)


async def get_deployment(request: Request) -> Response:
    """GET /api/v1/deployments/{id}."""
    if not authorized(request):
        return unauthorized()
    record = await services_of(request).store.get(request.path_params["deployment_id"])
    if record is None:
        return error(404, "not_found", "no such deployment")
    return JSONResponse(record.public().model_dump(mode="json"))


async def get_report(request: Request) -> Response:
    """GET /api/v1/deployments/{id}/report: the failure report as Markdown (404 when none)."""
    if not authorized(request):
        return unauthorized()
    record = await services_of(request).store.get(request.path_params["deployment_id"])
    if record is None:
        return error(404, "not_found", "no such deployment")
    if record.verdict is None or not record.verdict.report:
        return error(404, "no_report", "the deployment has no failure report")
    return Response(record.verdict.report, media_type="text/markdown; charset=utf-8")


async def list_deployments(request: Request) -> Response:
    """GET /api/v1/deployments?repository=&state=&limit=&metadata.KEY=VALUE (newest first)."""
    if not authorized(request):
        return unauthorized()
    params = request.query_params
    try:
        limit = int(params.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return error(
            422,
            "invalid_request",
            "limit must be an integer from 1 to 500",
            errors=[{"field": "limit", "message": "must be 1..500"}],
        )
    state = params.get("state")
    if state is not None and state not in ("dispatched", "in_progress", "completed"):
        return error(
            422,
            "invalid_request",
            "state must be dispatched, in_progress or completed",
            errors=[{"field": "state", "message": "unknown state"}],
        )
    metadata = {
        name.removeprefix("metadata."): value
        for name, value in params.multi_items()
        if name.startswith("metadata.")
    }
    try:
        check_metadata(metadata)
    except ValueError as exc:
        return error(
            422,
            "invalid_request",
            f"metadata filter: {exc}",
            errors=[{"field": "metadata", "message": str(exc)}],
        )
    records = await services_of(request).store.recent(
        repository=params.get("repository"), state=state, limit=limit, metadata=metadata
    )
    body = DeploymentList(deployments=[r.public() for r in records])
    return JSONResponse(body.model_dump(mode="json"))


async def cancel_deployment(request: Request) -> Response:
    """POST /api/v1/deployments/{id}/cancel: cancel the run on GitHub; the verdict follows."""
    if not authorized(request):
        return unauthorized()
    services = services_of(request)
    record = await services.store.get(request.path_params["deployment_id"])
    if record is None:
        return error(404, "not_found", "no such deployment")
    if record.state == "completed":
        return error(409, "already_completed", "the deployment already has its verdict")
    if record.run is None:
        return error(
            409, "run_unknown", "the run is not identified yet; try again in a few seconds"
        )
    try:
        installation = record.installation_id or await services.github.installation_for(
            record.repository
        )
        await services.github.cancel_run(record.repository, installation, record.run.id)
    except GitHubUnavailable as exc:
        return error(503, "github_unavailable", str(exc), headers={"Retry-After": "30"})
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) == 409:
            # The run finished meanwhile: its verdict is on the way.
            return error(409, "already_completed", f"GitHub says the run ended: {exc}")
        return error(502, "github_refused", f"GitHub refused to cancel the run: {exc}")
    log.info("cancel requested", extra={"deployment_id": record.id, "run_id": record.run.id})
    return JSONResponse(record.public().model_dump(mode="json"), 202)


async def resend_callback(request: Request) -> Response:
    """POST /api/v1/deployments/{id}/callback: deliver the verdict again (an operator's resend)."""
    if not authorized(request):
        return unauthorized()
    services = services_of(request)
    deployment_id = request.path_params["deployment_id"]
    record = await services.store.get(deployment_id)
    if record is None:
        return error(404, "not_found", "no such deployment")
    if record.state != "completed" or not await services.store.resend_callback(deployment_id):
        return error(409, "not_completed", "the deployment has no verdict to send yet")
    services.sender.wake()
    record = await services.store.get(deployment_id) or record
    return JSONResponse(record.public().model_dump(mode="json"), 202)


routes = [
    Route("/api/v1/deployments", create_deployment, methods=["POST"]),
    Route("/api/v1/deployments", list_deployments, methods=["GET"]),
    Route("/api/v1/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route("/api/v1/deployments/{deployment_id}/report", get_report, methods=["GET"]),
    Route("/api/v1/deployments/{deployment_id}/cancel", cancel_deployment, methods=["POST"]),
    Route("/api/v1/deployments/{deployment_id}/callback", resend_callback, methods=["POST"]),
]
