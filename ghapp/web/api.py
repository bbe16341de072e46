"""The orchestrator API: ask for a deployment, read it, list them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import gidgethub
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core.deploy_dispatch import environment_of
from ghapp.core.models import DeploymentList, DeploymentRequest, RollbackRequest
from ghapp.core.scopes import Grant
from ghapp.core.validation import REPOSITORY_PATTERN, check_metadata
from ghapp.github.client import GitHubUnavailable
from ghapp.store import IdempotencyConflict
from ghapp.store.metadata_filter import MAX_FILTERS as MAX_METADATA_FILTERS
from ghapp.web.authz import audit, authenticate, authorize, check, unauthorized
from ghapp.web.http import (
    callback_target,
    error,
    idempotency_key,
    query_int,
    request_model,
    services_of,
    stored,
)
from ghapp.work import launch

if TYPE_CHECKING:
    from ghapp.core.deploys import DeploymentRecord
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.api")
# Most deployments one list answer holds (docs/reference/http-api.md).
LIST_MAX = 200
REPOSITORY = re.compile(REPOSITORY_PATTERN)
StartBody = TypeVar("StartBody", DeploymentRequest, RollbackRequest)


@dataclass
class StartRequest(Generic[StartBody]):
    """A request that starts a deployment, checked: its body, where its callbacks go, its key."""

    body: StartBody
    callback_url: str
    key: str | None
    grant: Grant


async def start_request(
    request: Request,
    model: type[StartBody],
    *,
    empty: bytes | None = None,
    where: Callable[[StartBody], tuple[str, str]] | None = None,
) -> StartRequest[StartBody] | Response:
    """The bearer token, the body, the token's scope where the body deploys (`where`: its
    repository and environment), its callback URL and its Idempotency-Key checked in that
    order; or the answer that refuses the request (401, 413 or 408, 400, 404 or 403, 422)."""
    grant = await authenticate(request)
    if grant is None:
        return unauthorized()
    body = await request_model(request, model, empty=empty)
    if isinstance(body, Response):
        return body
    if where is not None:
        repository, environment = where(body)
        refused = check(grant, request, repository=repository, environment=environment)
        if refused is None and getattr(body, "override", None) is not None:
            refused = check(grant, request, repository=repository, environment=environment,
                            scope="override")
        if refused is not None:
            action = "rollback.create" if model is RollbackRequest else "deployment.create"
            await audit(request, action, target=f"{repository} {environment}",
                        outcome=refused.status_code, grant=grant)
            return refused
    callback_url = callback_target(services_of(request).settings, body.callback_url)
    if isinstance(callback_url, Response):
        return callback_url
    key = idempotency_key(request)
    if isinstance(key, Response):
        return key
    return StartRequest(body, callback_url, key, grant)


async def create_deployment(request: Request) -> Response:
    """POST /api/v1/deployments: dispatch the workflow and answer 202 with the Deployment."""
    # The 5 s answer counts from here (ghapp.work.dispatching).
    started = asyncio.get_running_loop().time()
    default_environment = services_of(request).settings.default_environment
    checked = await start_request(
        request,
        DeploymentRequest,
        where=lambda b: (b.repository, environment_of(b, default_environment)),
    )
    if isinstance(checked, Response):
        return checked
    body, callback_url = checked.body, checked.callback_url
    body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()

    async def plan() -> launch.Plan:
        return launch.Plan(
            body,
            callback_url,
            started=started,
            traceparent=request.headers.get("traceparent"),
            tracestate=request.headers.get("tracestate"),
        )

    return await start_answer(
        request, checked, body_hash, plan, action="deployment.create", target=body.repository
    )


async def start_answer(
    request: Request,
    checked: StartRequest[StartBody],
    body_hash: str,
    plan: Callable[[], Awaitable[launch.Plan]],
    *,
    action: str,
    target: str,
) -> Response:
    """Start a deployment, answer as docs/reference/http-api.md says (202, 200 on a repeat,
    409, 503) and record it in the audit trail."""
    answer, deployment_id = await _start_answer(services_of(request), checked, body_hash, plan)
    reason = getattr(getattr(checked.body, "override", None), "reason", None)
    await audit(request, action, target=deployment_id or target, outcome=answer.status_code,
                grant=checked.grant, reason=reason)
    return answer


async def _start_answer(
    services: Services,
    checked: StartRequest[StartBody],
    body_hash: str,
    plan: Callable[[], Awaitable[launch.Plan]],
) -> tuple[Response, str | None]:
    requested_by = checked.grant.name

    async def planned() -> launch.Plan:
        made = await plan()
        made.requested_by = requested_by
        return made

    try:
        started = await launch.start(services, checked.key, body_hash, planned)
    except IdempotencyConflict:
        return _no_id(error(
            409, "idempotency_conflict", "this Idempotency-Key was used with another body"
        ))
    except launch.InProgress:
        return _no_id(error(
            409,
            "in_progress",
            "the first request with this Idempotency-Key is still being answered; "
            "send it again in a few seconds",
            headers={"Retry-After": "2"},
        ))
    except launch.Conflict as exc:
        return _no_id(error(409, "conflict", str(exc), deployment_id=exc.deployment_id))
    except launch.NoRelease as exc:
        return _no_id(error(409, "no_release", str(exc)))
    except GitHubUnavailable as exc:
        log.warning("GitHub unavailable for dispatch", extra={"error": str(exc)})
        return _no_id(error(
            503,
            "github_unavailable",
            f"GitHub could not take the dispatch: {exc}",
            headers={"Retry-After": "30"},
        ))
    status = 200 if started.repeat else 202
    body = started.record.public().model_dump(mode="json")
    return JSONResponse(body, status), started.record.id


async def _refused(request: Request, action: str, answer: Response) -> None:
    """A refused state-changing request is audited too (not an anonymous one: that costs a
    row to anyone)."""
    if answer.status_code != 401:
        target = request.path_params.get("deployment_id", "")
        await audit(request, action, target=target, outcome=answer.status_code)


def _no_id(answer: Response) -> tuple[Response, str | None]:
    return answer, None


async def deployment_for(request: Request) -> DeploymentRecord | Response:
    """The path's deployment when the token may use the route on it; else 401, 404 (no such
    deployment, or outside the token's repositories) or 403 (a scope it lacks)."""
    grant = await authenticate(request)
    if grant is None:
        return unauthorized()
    record = await stored(services_of(request), request.path_params["deployment_id"])
    if record is None:
        return error(404, "not_found", "no such deployment")
    refused = check(grant, request, repository=record.repository, environment=record.environment)
    return refused if refused is not None else record


async def get_deployment(request: Request) -> Response:
    """GET /api/v1/deployments/{id}."""
    record = await deployment_for(request)
    if isinstance(record, Response):
        return record
    return JSONResponse(record.public().model_dump(mode="json"))


async def get_report(request: Request) -> Response:
    """GET /api/v1/deployments/{id}/report: the failure report as Markdown (404 when none)."""
    record = await deployment_for(request)
    if isinstance(record, Response):
        return record
    if record.verdict is None or not record.verdict.report:
        return error(404, "no_report", "the deployment has no failure report")
    return Response(record.verdict.report, media_type="text/markdown; charset=utf-8")


async def list_deployments(request: Request) -> Response:
    """GET /api/v1/deployments?repository=&state=&limit=&metadata.KEY=VALUE (newest first);
    a token sees its repositories and environments only."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
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
        repository=repository,
        state=state,
        limit=limit,
        metadata=metadata,
        visible=None if grant.everywhere else (grant.repositories, grant.environments),
    )
    body = DeploymentList(deployments=[r.public() for r in records])
    return JSONResponse(body.model_dump(mode="json"))


async def cancel_deployment(request: Request) -> Response:
    """POST /api/v1/deployments/{id}/cancel: cancel the run on GitHub; the verdict follows."""
    record = await deployment_for(request)
    if isinstance(record, Response):
        await _refused(request, "deployment.cancel", record)
        return record
    answer = await _cancel(services_of(request), record)
    await audit(request, "deployment.cancel", target=record.id, outcome=answer.status_code)
    return answer


async def _cancel(services: Services, record: DeploymentRecord) -> Response:
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
    record = await deployment_for(request)
    if isinstance(record, Response):
        await _refused(request, "deployment.callback_resend", record)
        return record
    services = services_of(request)
    deployment_id = record.id
    if record.state != "completed" or not await services.store.resend_callback(deployment_id):
        answer: Response = error(409, "not_completed", "the deployment has no verdict to send yet")
    else:
        services.sender.wake()
        record = await services.store.get(deployment_id) or record
        answer = JSONResponse(record.public().model_dump(mode="json"), 202)
    await audit(
        request, "deployment.callback_resend", target=deployment_id, outcome=answer.status_code
    )
    return answer


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
