"""The gate's routes: its decisions (listed, a held one approved or rejected) and a preview of
what a deploy would meet now (docs/gate.md)."""

from __future__ import annotations

import gidgethub
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.github.client import GitHubUnavailable
from ghapp.store.gate import public_decision
from ghapp.web.authz import audit, authorize
from ghapp.web.http import error, query_int, services_of

ORIGINS = ("ghapp", "foreign")
DECISIONS = ("approved", "rejected", "held")


async def list_decisions(request: Request) -> Response:
    """GET /api/v1/gate/decisions?repository=&environment=&origin=&decision=&limit=."""
    grant = await authorize(request)  # admin (the route table)
    if isinstance(grant, Response):
        return grant
    query = request.query_params
    limit = query_int(query.get("limit"), default=50, top=500)
    if limit is None:
        return error(400, "bad_request", "limit must be a whole number from 1 to 500")
    origin, decision = query.get("origin"), query.get("decision")
    if origin is not None and origin not in ORIGINS:
        return error(400, "bad_request", "origin must be ghapp or foreign")
    if decision is not None and decision not in DECISIONS:
        return error(400, "bad_request", "decision must be approved, rejected or held")
    found = await services_of(request).store.gate_decisions(
        repository=query.get("repository") or None,
        environment=query.get("environment") or None,
        origin=origin,
        decision=decision,
        limit=limit,
    )
    return JSONResponse({"decisions": [public_decision(doc) for doc in found]})


async def _settle(request: Request, decision: str) -> Response:
    grant = await authorize(request)  # admin (the route table)
    if isinstance(grant, Response):
        return grant
    answer = await _settled(request, decision)
    action = "gate.approve" if decision == "approved" else "gate.reject"
    await audit(request, action, target=str(request.path_params["id"]),
                outcome=answer.status_code, grant=grant)
    return answer


async def _settled(request: Request, decision: str) -> Response:
    services = services_of(request)
    decision_id = str(request.path_params["id"])
    existing = await services.store.gate_decision(decision_id)
    if existing is None:
        return error(404, "not_found", f"no gate decision {decision_id}")
    try:
        from ghapp.work import gate  # loaded at first use (idle memory)

        settled = await gate.settle(services, decision_id, decision)
    except (gidgethub.GitHubException, GitHubUnavailable) as exc:
        return error(502, "github_refused", f"GitHub did not take the answer: {exc}")
    if settled is None:
        return error(
            409, "not_held", f"gate decision {decision_id} is {existing['decision']}, not held"
        )
    return JSONResponse(settled)


async def approve(request: Request) -> Response:
    """POST /api/v1/gate/decisions/{id}/approve: a held run may start."""
    return await _settle(request, "approved")


async def reject(request: Request) -> Response:
    """POST /api/v1/gate/decisions/{id}/reject: a held run ends."""
    return await _settle(request, "rejected")


async def preview(request: Request) -> Response:
    """GET /api/v1/gate/preview?repository=&environment=&ref=: would a deploy pass now?"""
    services = services_of(request)
    query = request.query_params
    repository, environment = query.get("repository"), query.get("environment")
    if not repository or "/" not in repository or not environment:
        grant = await authorize(request)
        if isinstance(grant, Response):
            return grant
        return error(400, "bad_request", "repository (owner/name) and environment are needed")
    grant = await authorize(request, repository=repository, environment=environment)
    if isinstance(grant, Response):
        return grant
    ref = query.get("ref") or None
    sha = None
    if ref is not None and services.settings.gate_policies().promotions(environment):
        from ghapp.github import gate_calls

        try:
            installation = await services.github.installation_for(repository)
            sha = await gate_calls.commit_sha(services.github, repository, installation, ref)
        except (gidgethub.GitHubException, GitHubUnavailable) as exc:
            return error(502, "github_refused", f"GitHub could not resolve {ref!r}: {exc}")
    from ghapp.work import gate

    verdict = await gate.policy_verdict(
        services.settings, services.store, repository=repository, environment=environment, sha=sha
    )
    return JSONResponse(verdict.as_json())


routes = [
    Route("/api/v1/gate/decisions", list_decisions, methods=["GET"]),
    Route("/api/v1/gate/decisions/{id}/approve", approve, methods=["POST"]),
    Route("/api/v1/gate/decisions/{id}/reject", reject, methods=["POST"]),
    Route("/api/v1/gate/preview", preview, methods=["GET"]),
]
