"""Releases, rollback and statistics: what is live where, put an earlier release back, and how
deploys go over time (docs/releases.md)."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core import releases
from ghapp.core.models import EnvironmentList, ReleaseList, RollbackRequest
from ghapp.web.api import start_answer, start_request
from ghapp.web.authz import authorize
from ghapp.web.http import error, services_of
from ghapp.work import launch

MAX_RELEASES = 200
MAX_DAYS = 366


def _repository(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['repo']}"


def _environment(request: Request) -> str:
    return str(request.path_params["environment"])


def _int_param(request: Request, name: str, default: int, high: int) -> int | None:
    try:
        value = int(request.query_params.get(name, str(default)))
    except ValueError:
        return None
    return value if 1 <= value <= high else None


async def list_environments(request: Request) -> Response:
    """GET /api/v1/repos/{owner}/{repo}/environments: each one's current and previous release
    (a token's own environments only)."""
    repository = _repository(request)
    grant = await authorize(request, repository=repository)
    if isinstance(grant, Response):
        return grant
    store = services_of(request).store
    views = [
        releases.environment_view(name, await store.releases(repository, name))
        for name in await store.environments(repository)
        if grant.sees_environment(name)
    ]
    return JSONResponse(EnvironmentList(environments=views).model_dump(mode="json"))


async def list_releases(request: Request) -> Response:
    """GET .../environments/{env}/releases?limit=: the releases, newest first."""
    grant = await authorize(
        request, repository=_repository(request), environment=_environment(request)
    )
    if isinstance(grant, Response):
        return grant
    limit = _int_param(request, "limit", 20, MAX_RELEASES)
    if limit is None:
        return error(
            422,
            "invalid_request",
            f"limit must be an integer from 1 to {MAX_RELEASES}",
            errors=[{"field": "limit", "message": f"must be 1..{MAX_RELEASES}"}],
        )
    history = await services_of(request).store.releases(
        _repository(request), _environment(request), limit
    )
    body = ReleaseList(releases=[releases.release_of(r) for r in history])
    return JSONResponse(body.model_dump(mode="json"))


async def rollback(request: Request) -> Response:
    """POST .../environments/{env}/rollback {"to": id|null}: dispatch an earlier release again."""
    repository, environment = _repository(request), _environment(request)
    checked = await start_request(
        request, RollbackRequest, empty=b"{}", where=lambda _body: (repository, environment)
    )
    if isinstance(checked, Response):
        return checked
    services = services_of(request)
    body, callback_url = checked.body, checked.callback_url
    body_hash = hashlib.sha256(
        f"rollback\x00{repository}\x00{environment}\x00{body.model_dump_json()}".encode()
    ).hexdigest()

    async def plan() -> launch.Plan:
        planned = await launch.rollback_plan(
            services,
            repository,
            environment,
            body.to,
            callback_url=callback_url,
            metadata=body.metadata,
        )
        planned.traceparent = request.headers.get("traceparent")
        planned.tracestate = request.headers.get("tracestate")
        return planned

    return await start_answer(
        request,
        checked,
        body_hash,
        plan,
        action="rollback.create",
        target=f"{repository}/{environment}",
    )


async def stats(request: Request) -> Response:
    """GET /api/v1/stats?repository=&environment=&days=30 (what the token may read only)."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    days = _int_param(request, "days", 30, MAX_DAYS)
    if days is None:
        return error(
            422,
            "invalid_request",
            f"days must be an integer from 1 to {MAX_DAYS}",
            errors=[{"field": "days", "message": f"must be 1..{MAX_DAYS}"}],
        )
    since = time.time() - days * 86400
    params = request.query_params
    repository = params.get("repository") or None
    environment = params.get("environment") or None
    # PostgreSQL refuses NUL in text, and no name has one: nothing matches.
    named = (repository or "") + (environment or "")
    entries = (
        []
        if "\x00" in named
        else await services_of(request).store.stats(
            since=since, days=days, repository=repository, environment=environment
        )
    )
    # Entries are per repository and environment: a token's globs keep or drop each whole.
    entries = [e for e in entries if grant.sees(e["repository"], e["environment"])]
    return JSONResponse(
        {"since": datetime.fromtimestamp(since, UTC).isoformat(), "stats": entries}
    )


_ENV = "/api/v1/repos/{owner}/{repo}/environments"
routes = [
    Route(_ENV, list_environments, methods=["GET"]),
    Route(_ENV + "/{environment}/releases", list_releases, methods=["GET"]),
    Route(_ENV + "/{environment}/rollback", rollback, methods=["POST"]),
    Route("/api/v1/stats", stats, methods=["GET"]),
]
