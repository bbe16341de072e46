"""Tokens and the audit trail through the API (admin): create, list, revoke; read the trail."""

from __future__ import annotations

import re
import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.core import audit as chain
from ghapp.core.scopes import GLOB, NAME, NAME_PATTERN, Scope
from ghapp.store.access import TokenNameTaken
from ghapp.web.authz import actor, audit, authorize
from ghapp.web.http import error, query_int, request_model, services_of
from ghapp.work.access import issue_token, public_token

AUDIT_MAX = 1000
DURATION_PATTERN = r"^([0-9]{1,6})([smhd])$"
DURATION = re.compile(DURATION_PATTERN)
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


READ: tuple[Scope, ...] = ("read",)
Glob = Annotated[str, StringConstraints(pattern=GLOB.pattern)]
# `admin` needs every repository and environment (said in the schema too, for clients).
ADMIN_EVERYWHERE: JsonDict = {
    "if": {"properties": {"scopes": {"contains": {"const": "admin"}}}, "required": ["scopes"]},
    "then": {
        "properties": {"repositories": {"const": ["*"]}, "environments": {"const": ["*"]}}
    },
}


class TokenRequest(BaseModel):
    """The body of POST /api/v1/tokens."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ADMIN_EVERYWHERE)

    name: str = Field(pattern=NAME_PATTERN, description="unique; not `orchestrator`")
    repositories: list[Glob] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    environments: list[Glob] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    scopes: list[Scope] = Field(default_factory=lambda: list(READ), min_length=1, max_length=6)
    expires_in_days: float | None = Field(default=None, gt=0, le=36500)


async def tokens(request: Request) -> Response:
    """GET /api/v1/tokens lists; POST /api/v1/tokens creates (the value is shown this once)."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    services = services_of(request)
    if request.method == "GET":
        rows = await services.store.list_tokens()
        return JSONResponse({"tokens": [public_token(row) for row in rows]})
    body = await request_model(request, TokenRequest)
    if isinstance(body, Response):
        return body
    try:
        issued = await issue_token(
            services.store,
            grant,
            name=body.name,
            repositories=list(body.repositories),
            environments=list(body.environments),
            scope_names=list(body.scopes),
            expires_in_days=body.expires_in_days,
            created_by=actor(grant),
        )
    except TokenNameTaken:
        answer: Response = error(409, "conflict", f"a token named {body.name!r} exists")
    except PermissionError as exc:
        answer = error(403, "forbidden", str(exc), missing_scope="admin")
    except ValueError as exc:
        answer = error(
            422, "invalid_request", str(exc), errors=[{"field": "body", "message": str(exc)}]
        )
    else:
        answer = JSONResponse({**public_token(issued.row), "token": issued.token}, 201)
    await audit(request, "token.create", target=body.name, outcome=answer.status_code)
    return answer


async def one_token(request: Request) -> Response:
    """GET /api/v1/tokens/{name} shows one token; DELETE revokes it: refused on every replica
    within 1 s."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    name = request.path_params["name"]
    services = services_of(request)
    if request.method == "GET":
        found = [row for row in await services.store.list_tokens() if row["name"] == name]
        if not found:
            return error(404, "not_found", "no such token")
        return JSONResponse(public_token(found[0]))
    gone = NAME.fullmatch(name) is not None and await services.store.revoke_token(name)
    services.tokens.forget()
    answer = Response(status_code=204) if gone else error(404, "not_found", "no such token")
    await audit(request, "token.revoke", target=name, outcome=answer.status_code)
    return answer


def since_of(value: str | None, now: float) -> float | None:
    """A `since` parameter: a duration back from now (`90s`, `30m`, `24h`, `7d`); ValueError
    when it is not one."""
    if value is None:
        return None
    found = DURATION.fullmatch(value)
    if not found:
        raise ValueError(value)
    return now - int(found.group(1)) * UNIT[found.group(2)]


async def audit_entries(request: Request) -> Response:
    """GET /api/v1/audit?actor=&action=&since=&limit= (newest first)."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    params = request.query_params
    limit = query_int(params.get("limit"), default=100, top=AUDIT_MAX)
    if limit is None:
        return error(422, "invalid_request", f"limit must be an integer from 1 to {AUDIT_MAX}",
                     errors=[{"field": "limit", "message": f"must be 1..{AUDIT_MAX}"}])
    action = params.get("action")
    if action is not None and action not in chain.ACTIONS:
        return error(422, "invalid_request", "action is not one of the audit actions",
                     errors=[{"field": "action", "message": "unknown action"}])
    try:
        since = since_of(params.get("since"), time.time())
    except ValueError:
        return error(422, "invalid_request", "since is a duration: 90s, 30m, 24h, 7d",
                     errors=[{"field": "since", "message": "invalid"}])
    who = params.get("actor") or None
    if who is not None and ("\x00" in who or len(who) > 200):
        return error(422, "invalid_request", "actor is at most 200 characters, without NUL",
                     errors=[{"field": "actor", "message": "invalid"}])
    entries = await services_of(request).store.audit_entries(
        actor=who, action=action, since=since, limit=limit
    )
    return JSONResponse({"entries": entries})


routes = [
    Route("/api/v1/tokens", tokens, methods=["GET", "POST"]),
    Route("/api/v1/tokens/{name}", one_token, methods=["GET", "DELETE"]),
    Route("/api/v1/audit", audit_entries, methods=["GET"]),
]
