"""GitHub's GraphQL API for deployments: `POST /graphql` (GitHub Enterprise Server:
`/api/graphql`), a real schema (`github.graphql`, a subset of GitHub's) executed by
graphql-core with resolvers over the simulator's state.

Authenticated with an installation token like REST; each query costs one point of a budget
of its own (`x-ratelimit-resource: graphql`). `faults.graphql_errors` answers that many
queries with GitHub's "Something went wrong" error, `faults.graphql_missing` answers 404 (a
server without the GraphQL API).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from aiohttp import web

from ghapp.simulator.accounts import node_id
from ghapp.simulator.clock import iso_z
from ghapp.simulator.http import ApiError, Call, Router, json_response
from ghapp.simulator.state import DeploymentState, DeploymentStatusState, Repository, World

if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo, GraphQLSchema

    from ghapp.simulator.auth import Bucket, TokenInfo
    from ghapp.simulator.simulated import SimulatedGitHub

DOCS = "https://docs.github.com/graphql"
MAX_PAGE = 100
# GitHub's Deployment.state from the latest status.
DEPLOYMENT_STATE = {"success": "ACTIVE", "inactive": "INACTIVE", "failure": "FAILURE",
                    "error": "ERROR", "in_progress": "IN_PROGRESS", "queued": "QUEUED",
                    "pending": "PENDING", "waiting": "WAITING"}


Info: TypeAlias = "GraphQLResolveInfo[Any]"


class NotFound(Exception):
    """A node GitHub would not resolve (unknown, or not reachable with the token)."""


@dataclass
class Context:
    """What resolvers see: the world, the caller's token and budget."""

    world: World
    token: TokenInfo
    bucket: Bucket


@dataclass(frozen=True)
class StatusOf:
    """A deployment status with its deployment (its fields need both)."""

    deployment: DeploymentState
    status: DeploymentStatusState


def _cursor(number: int) -> str:
    return base64.b64encode(f"cursor:v2:{number}".encode()).decode()


def _from_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        return int(text.removeprefix("cursor:v2:"))
    except ValueError:
        raise NotFound(f"`{cursor}` does not appear to be a valid cursor.") from None


def _node_number(value: str) -> tuple[str, int] | None:
    prefix, _, rest = value.partition("_kwDO")
    try:
        raw = base64.b64decode(rest + "=" * (-len(rest) % 4), validate=True)
    except ValueError:
        return None
    return (prefix, int.from_bytes(raw, "big")) if len(raw) == 8 else None


def _reachable(ctx: Context, repo: Repository) -> bool:
    return repo.installation_id == ctx.token.installation_id and ctx.token.covers(repo.full_name)


def connection(items: list[Any], key: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A page of a connection, sliced by first/last/after/before as GitHub does."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise NotFound(f"You must provide a `first` or `last` value to properly paginate the "
                       f"`{name}` connection.")
    for word, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise NotFound(f"Requesting {value} records on the `{name}` connection exceeds the "
                           f"`{word}` limit of {MAX_PAGE} records.")
    numbers = [key(item) for item in items]
    start, end = 0, len(items)
    after, before = _from_cursor(args.get("after")), _from_cursor(args.get("before"))
    if after is not None and after in numbers:
        start = numbers.index(after) + 1
    if before is not None and before in numbers:
        end = numbers.index(before)
    window = items[start:end]
    has_next = has_previous = False
    if first is not None and len(window) > first:
        window, has_next = window[:first], True
    if last is not None and len(window) > last:
        window, has_previous = window[len(window) - last:], True
    has_next = has_next or end < len(items)
    has_previous = has_previous or start > 0
    cursors = [_cursor(key(item)) for item in window]
    return {
        "nodes": window,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, window, strict=True)],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_previous,
                     "startCursor": cursors[0] if cursors else None,
                     "endCursor": cursors[-1] if cursors else None},
        "totalCount": len(items),
    }


# -- resolvers ---------------------------------------------------------------------------------


def _repository(_root: Any, info: Info, owner: str, name: str,
                **_args: Any) -> Repository:
    ctx: Context = info.context
    repo = ctx.world.repo_of(owner, name)
    if repo is None or not _reachable(ctx, repo):
        raise NotFound(f"Could not resolve to a Repository with the name '{owner}/{name}'.")
    return repo


def _deployments(repo: Repository, info: Info, **args: Any) -> dict[str, Any]:
    ctx: Context = info.context
    environments = args.get("environments")
    found = [d for d in ctx.world.deployments.values() if d.repo is repo
             and (environments is None or d.environment in environments)]
    order = args.get("orderBy") or {}
    found.sort(key=lambda d: (d.created, d.id), reverse=order.get("direction") == "DESC")
    return connection(found, lambda d: d.id, "deployments", args)


def _statuses(dep: DeploymentState, _info: Info,
              **args: Any) -> dict[str, Any]:
    ordered = [StatusOf(dep, s) for s in sorted(dep.statuses, key=lambda s: s.id)]
    return connection(ordered, lambda s: s.status.id, "statuses", args)


def _latest(dep: DeploymentState, _info: Info) -> StatusOf | None:
    return StatusOf(dep, max(dep.statuses, key=lambda s: s.id)) if dep.statuses else None


def _nodes(_root: Any, info: Info, ids: list[str]) -> list[Any]:
    ctx: Context = info.context
    found: list[Any] = []
    for value in ids:
        parsed = _node_number(value)
        node: Any = None
        if parsed is not None and parsed[0] == "DE":
            node = ctx.world.deployments.get(parsed[1])
        elif parsed is not None and parsed[0] == "DES":
            node = next((StatusOf(d, s) for d in ctx.world.deployments.values()
                         for s in d.statuses if s.id == parsed[1]), None)
        repo = node.repo if isinstance(node, DeploymentState) else (
            node.deployment.repo if isinstance(node, StatusOf) else None)
        if repo is None or not _reachable(ctx, repo):
            raise NotFound(f"Could not resolve to a node with the global id of '{value}'")
        found.append(node)
    return found


def _node(root: Any, info: Info, id: str) -> Any:
    return _nodes(root, info, [id])[0]


def _rate_limit(_root: Any, info: Info, **_args: Any) -> dict[str, Any]:
    bucket = info.context.bucket
    return {"cost": 1, "limit": bucket.limit, "nodeCount": 0,
            "remaining": max(bucket.remaining - 1, 0), "resetAt": iso_z(bucket.reset),
            "used": bucket.used + 1}


def _field(get: Any) -> Any:
    return lambda obj, _info, **_args: get(obj)


RESOLVERS: dict[str, dict[str, Any]] = {
    "Query": {"repository": _repository, "nodes": _nodes, "node": _node,
              "rateLimit": _rate_limit},
    "Repository": {
        "id": _field(lambda r: node_id("R", r.id)),
        "databaseId": _field(lambda r: r.id),
        "name": _field(lambda r: r.name),
        "nameWithOwner": _field(lambda r: r.full_name),
        "deployments": _deployments,
    },
    "Deployment": {
        "id": _field(lambda d: node_id("DE", d.id)),
        "databaseId": _field(lambda d: d.id),
        "commitOid": _field(lambda d: d.sha),
        "createdAt": _field(lambda d: iso_z(d.created)),
        "updatedAt": _field(lambda d: iso_z(d.updated)),
        "description": _field(lambda _d: None),
        "environment": _field(lambda d: d.environment),
        "latestEnvironment": _field(lambda d: d.environment),
        "originalEnvironment": _field(lambda d: d.environment),
        "payload": _field(lambda _d: "{}"),
        "task": _field(lambda _d: "deploy"),
        "repository": _field(lambda d: d.repo),
        "state": _field(lambda d: DEPLOYMENT_STATE.get(d.statuses[-1].state, "PENDING")
                        if d.statuses else "PENDING"),
        "latestStatus": _latest,
        "statuses": _statuses,
    },
    "DeploymentStatus": {
        "id": _field(lambda s: node_id("DES", s.status.id)),
        "createdAt": _field(lambda s: iso_z(s.status.created)),
        "updatedAt": _field(lambda s: iso_z(s.status.created)),
        "deployment": _field(lambda s: s.deployment),
        "description": _field(lambda s: s.status.description),
        "environment": _field(lambda s: s.deployment.environment),
        "environmentUrl": _field(lambda s: s.status.environment_url or None),
        "logUrl": _field(lambda s: s.status.log_url or None),
        "state": _field(lambda s: s.status.state.upper()),
    },
}


@cache
def schema() -> GraphQLSchema:
    """The schema subset (SDL in `github.graphql`) with the resolvers bound."""
    from graphql import GraphQLInterfaceType, GraphQLObjectType, build_schema

    sdl = resources.files("ghapp.simulator").joinpath("github.graphql").read_text()
    built = build_schema(sdl)
    for type_name, fields in RESOLVERS.items():
        kind = built.get_type(type_name)
        assert isinstance(kind, GraphQLObjectType)
        for field_name, resolve in fields.items():
            kind.fields[field_name].resolve = resolve
    node = built.get_type("Node")
    assert isinstance(node, GraphQLInterfaceType)
    node.resolve_type = lambda obj, _info, _type: (
        "Deployment" if isinstance(obj, DeploymentState) else "DeploymentStatus")
    return built


def execute(query: str, variables: dict[str, Any] | None, operation: str | None,
            ctx: Context) -> dict[str, Any]:
    """Run a query; the answer body as GitHub writes it (`data`, and `errors` if any)."""
    from graphql import graphql_sync

    result = graphql_sync(schema(), query, context_value=ctx, variable_values=variables,
                          operation_name=operation)
    body: dict[str, Any] = {}
    if result.errors:
        errors = []
        for error in result.errors:
            item = dict(error.formatted)
            if isinstance(error.original_error, NotFound):
                item["type"] = "NOT_FOUND"
            errors.append(item)
        body["errors"] = errors
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return body


def register(router: Router, sim: SimulatedGitHub) -> None:
    """Add `POST /graphql` and GitHub Enterprise Server's `POST /api/graphql`."""

    async def answer(call: Call) -> web.StreamResponse:
        # Each host has one of the two: github.com's /graphql, GHES's /api/graphql.
        if sim.faults.graphql_missing or sim.faults.ghes != (call.request.path == "/api/graphql"):
            raise ApiError(404, "Not Found", DOCS)
        assert call.token is not None
        body = await call.body()
        if sim.faults.graphql_errors > 0:
            sim.faults.graphql_errors -= 1
            if call.record is not None:
                call.record.fault = "graphql_errors"
            return json_response({"data": None, "errors": [{"message": (
                "Something went wrong while executing your query. Please include "
                f"`{secrets.token_hex(4).upper()}` when reporting this issue.")}]})
        query, variables = body.get("query"), body.get("variables")
        if not isinstance(query, str) or not query.strip():
            return json_response({"errors": [{"message": "A query attribute must be specified "
                                                          "and must be a string."}]})
        if variables is not None and not isinstance(variables, dict):
            return json_response({"errors": [{"message": "Variables are invalid JSON."}]})
        bucket = sim.rate_limits.bucket(f"graphql:inst:{call.token.installation_id}")
        operation = body.get("operationName")
        ctx = Context(sim.world, call.token, bucket)
        return json_response(execute(query, variables, operation if isinstance(
            operation, str) else None, ctx))

    router.route("POST", "/graphql")(answer)
    router.route("POST", "/api/graphql")(answer)
