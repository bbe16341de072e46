"""The orchestrator API: ask for a deployment, read it, list them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import gidgethub
from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.config import Settings
from ghapp.core.models import (
    REPOSITORY_PATTERN,
    DeploymentList,
    DeploymentRequest,
    check_metadata,
)
from ghapp.github.client import GitHubUnavailable
from ghapp.store import IdempotencyConflict
from ghapp.store.metadata_filter import MAX_FILTERS as MAX_METADATA_FILTERS
from ghapp.web import launch
from ghapp.web.limits import API_CAP, BodyRefused, read_body

if TYPE_CHECKING:
    from ghapp.core.deploys import DeploymentRecord
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.api")
ModelT = TypeVar("ModelT", bound=BaseModel)
# Most deployments one list answer holds (DESIGN.md).
LIST_MAX = 200
REPOSITORY = re.compile(REPOSITORY_PATTERN)
# ghapp's own ids are `dep_` and 24 hex digits; this is looser, and bounded.
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEPLOYMENT_ID = re.compile(DEPLOYMENT_ID_PATTERN)
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,200}$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


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


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def callback_allowed(url: str, allowed: list[str], default_url: str | None = None) -> bool:
    """Whether ghapp may call `url` back (DESIGN.md, Hardening rules: Input checks).

    With CALLBACK_ALLOWED_HOSTS (`allowed`): its host equals an entry's, and its port too where
    the entry names one. Without: its scheme, host and effective port equal `default_url`'s.
    """
    try:
        scheme, host, port = _origin(url)
        if not allowed:
            return default_url is not None and (scheme, host, port) == _origin(default_url)
    except ValueError:
        return False
    for entry in allowed:
        wanted = urlsplit("//" + entry.strip().lower())
        try:
            wanted_port = wanted.port
        except ValueError:
            continue
        if wanted.hostname == host and wanted_port in (None, port):
            return True
    return False


async def stored(services: Services, deployment_id: str) -> DeploymentRecord | None:
    """The deployment with this id; None too for what cannot be an id (no lookup then)."""
    if not DEPLOYMENT_ID.fullmatch(deployment_id):
        return None
    return await services.store.get(deployment_id)


def query_int(value: str | None, *, default: int, top: int) -> int | None:
    """A query parameter that must be an integer in 1..top (None: it is not)."""
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    number = int(value)
    return number if 1 <= number <= top else None


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the API's `errors` list."""
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors()
    ]


async def request_model(
    request: Request, model: type[ModelT], *, empty: bytes | None = None
) -> ModelT | Response:
    """The body read within the API's cap and validated, or the 413/408, 400 or 422 answer;
    `empty` stands for a body that was left out."""
    try:
        raw = await read_body(request, API_CAP)
    except BodyRefused as exc:
        return error(exc.status, exc.code, str(exc))
    try:
        # Strict: no NaN or Infinity, no lone surrogates; they cannot be stored or sent back.
        payload = from_json(raw or empty or b"", allow_inf_nan=False)
    except ValueError as exc:
        return error(400, "invalid_json", f"the body is not JSON: {exc}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return error(
            422, "invalid_request", "the body breaks the schema", errors=field_errors(exc)
        )


def callback_target(settings: Settings, requested: str | None) -> str | Response:
    """Where a request's callbacks go (its own URL or ORCHESTRATOR_CALLBACK_URL), or the 422."""
    callback_url = requested or settings.orchestrator_callback_url
    if callback_url is None:
        return error(
            422,
            "invalid_request",
            "no callback_url in the request and no ORCHESTRATOR_CALLBACK_URL set",
            errors=[{"field": "callback_url", "message": "required"}],
        )
    if not callback_allowed(
        callback_url, settings.callback_allowed_hosts, settings.orchestrator_callback_url
    ):
        where = (
            "its host is not in CALLBACK_ALLOWED_HOSTS"
            if settings.callback_allowed_hosts
            else "its scheme, host and port differ from ORCHESTRATOR_CALLBACK_URL's "
            "(set CALLBACK_ALLOWED_HOSTS to allow others)"
        )
        return error(
            422,
            "invalid_request",
            f"callback_url is not allowed: {where}",
            errors=[{"field": "callback_url", "message": "host not allowed"}],
        )
    return callback_url


def idempotency_key(request: Request) -> str | Response | None:
    """The request's Idempotency-Key (None without one), or the 422 for a malformed one."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        return error(
            422,
            "invalid_request",
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
            errors=[{"field": "Idempotency-Key", "message": "invalid"}],
        )
    return key


async def create_deployment(request: Request) -> Response:
    """POST /api/v1/deployments: dispatch the workflow and answer 202 with the Deployment."""
    # The 5 s answer counts from here (ghapp.web.dispatching).
    started = asyncio.get_running_loop().time()
    if not authorized(request):
        return unauthorized()
    services = services_of(request)
    body = await request_model(request, DeploymentRequest)
    if isinstance(body, Response):
        return body
    callback_url = callback_target(services.settings, body.callback_url)
    if isinstance(callback_url, Response):
        return callback_url
    key = idempotency_key(request)
    if isinstance(key, Response):
        return key
    body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()

    async def plan() -> launch.Plan:
        return launch.Plan(body, callback_url, started=started)

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
    record = await stored(services_of(request), request.path_params["deployment_id"])
    if record is None:
        return error(404, "not_found", "no such deployment")
    return JSONResponse(record.public().model_dump(mode="json"))


async def get_report(request: Request) -> Response:
    """GET /api/v1/deployments/{id}/report: the failure report as Markdown (404 when none)."""
    if not authorized(request):
        return unauthorized()
    record = await stored(services_of(request), request.path_params["deployment_id"])
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
    limit = query_int(params.get("limit"), default=50, top=LIST_MAX)
    if limit is None:
        return error(
            422,
            "invalid_request",
            f"limit must be an integer from 1 to {LIST_MAX}",
            errors=[{"field": "limit", "message": f"must be 1..{LIST_MAX}"}],
        )
    state = params.get("state")
    if state is not None and state not in ("dispatched", "in_progress", "completed"):
        return error(
            422,
            "invalid_request",
            "state must be dispatched, in_progress or completed",
            errors=[{"field": "state", "message": "unknown state"}],
        )
    repository = params.get("repository")
    if repository is not None and not REPOSITORY.fullmatch(repository):
        return error(
            422,
            "invalid_request",
            "repository must be 'owner/name' in GitHub's characters",
            errors=[{"field": "repository", "message": "not a repository name"}],
        )
    filters = [
        (name.removeprefix("metadata."), value)
        for name, value in params.multi_items()
        if name.startswith("metadata.")
    ]
    if len(filters) > MAX_METADATA_FILTERS:
        return error(
            422,
            "invalid_request",
            f"at most {MAX_METADATA_FILTERS} metadata.KEY=VALUE filters in one request",
            errors=[{"field": "metadata", "message": f"at most {MAX_METADATA_FILTERS} filters"}],
        )
    metadata = dict(filters)
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
        repository=repository, state=state, limit=limit, metadata=metadata
    )
    body = DeploymentList(deployments=[r.public() for r in records])
    return JSONResponse(body.model_dump(mode="json"))


async def cancel_deployment(request: Request) -> Response:
    """POST /api/v1/deployments/{id}/cancel: cancel the run on GitHub; the verdict follows."""
    if not authorized(request):
        return unauthorized()
    services = services_of(request)
    record = await stored(services, request.path_params["deployment_id"])
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
    record = await stored(services, deployment_id)
    if record is None:
        return error(404, "not_found", "no such deployment")
    if record.state != "completed" or not await services.store.resend_callback(deployment_id):
        return error(409, "not_completed", "the deployment has no verdict to send yet")
    services.sender.wake()
    record = await services.store.get(deployment_id) or record
    return JSONResponse(record.public().model_dump(mode="json"), 202)


async def deployments(request: Request) -> Response:
    """/api/v1/deployments: POST asks for one, GET lists them (one route: one `Allow` header)."""
    if request.method == "POST":
        return await create_deployment(request)
    return await list_deployments(request)


routes = [
    Route("/api/v1/deployments", deployments, methods=["GET", "POST"]),
    Route("/api/v1/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route("/api/v1/deployments/{deployment_id}/report", get_report, methods=["GET"]),
    Route("/api/v1/deployments/{deployment_id}/cancel", cancel_deployment, methods=["POST"]),
    Route("/api/v1/deployments/{deployment_id}/callback", resend_callback, methods=["POST"]),
]
