"""Who is asking and whether they may (docs/access.md): the bearer token's grant, checked
against the route's scope (ghapp.core.scopes.ROUTE_SCOPES), and the audit row of a request."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ghapp.core import scopes
from ghapp.core.scopes import Grant

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.audit")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def bearer(request: Request) -> str | None:
    """The bearer token of the request, if it carries one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(request: Request) -> Grant | None:
    """The grant of the request's bearer token (None: no token, unknown, revoked, expired)."""
    cached = getattr(request.state, "grant", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = bearer(request)
    if token is None:
        return None
    grant = await _services(request).tokens.grant(token)
    request.state.grant = grant
    return grant


def unauthorized() -> JSONResponse:
    """401 with the Bearer challenge."""
    return JSONResponse(
        {
            "error": "unauthorized",
            "message": "missing or wrong bearer token (Authorization: Bearer $ORCHESTRATOR_TOKEN "
            "or a token from `ghapp tokens create`)",
        },
        401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def route_scope(request: Request) -> str:
    """The scope the matched route needs, from the route table."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    return scopes.scope_for(request.method, template)


def refusal(decision: scopes.Decision) -> JSONResponse:
    """The 404 or 403 answer of a refused decision."""
    if decision.status == 404:
        return JSONResponse({"error": "not_found", "message": decision.message}, 404)
    return JSONResponse(
        {"error": "forbidden", "message": decision.message,
         "missing_scope": decision.missing_scope},
        403,
    )


def check(
    grant: Grant,
    request: Request,
    *,
    repository: str | None = None,
    environment: str | None = None,
    scope: str | None = None,
) -> Response | None:
    """None when the grant may use the route here, else the 404/403 answer."""
    decision = scopes.decide(grant, scope or route_scope(request), repository, environment)
    return None if decision.allowed else refusal(decision)


async def authorize(
    request: Request,
    *,
    repository: str | None = None,
    environment: str | None = None,
    scope: str | None = None,
) -> Grant | Response:
    """The request's grant when it may use this route (here), else the 401/404/403 answer."""
    grant = await authenticate(request)
    if grant is None:
        return unauthorized()
    refused = check(grant, request, repository=repository, environment=environment, scope=scope)
    return refused if refused is not None else grant


def actor(grant: Grant | None) -> str:
    """The audit trail's name for who asked."""
    return f"token:{grant.name}" if grant is not None else "anonymous"


async def audit(
    request: Request,
    action: str,
    *,
    target: str | None,
    outcome: str | int,
    grant: Grant | None = None,
    who: str | None = None,
    reason: str | None = None,
) -> None:
    """Append the request's audit row (actor, client address, request id, outcome)."""
    if grant is None:
        grant = getattr(request.state, "grant", None)
    if str(outcome) == "503":
        # Refused while the database or GitHub is away: nothing changed, and a write now would
        # only delay the answer. The log keeps it.
        log.warning("audit: refused with 503", extra={"action": action, "target": target})
        return
    await _services(request).auditor.record(
        actor=who or actor(grant),
        action=action,
        target=target,
        outcome=str(outcome),
        client=request.client.host if request.client is not None else None,
        request_id=request.headers.get("x-request-id") or uuid.uuid4().hex[:16],
        reason=reason,
    )
