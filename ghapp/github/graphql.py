"""GitHub's GraphQL API for deployments: the endpoint, the query ghapp sends and reading its
answer. No I/O here (the client sends it with gidgethub's `graphql()`).

Fields are GitHub's public schema (`Repository.deployments`, `Deployment.commitOid`,
`.environment`, `.createdAt`, `.latestStatus`, `.statuses`, `DeploymentStatus.state`,
`.environmentUrl`, `.logUrl`); tests validate the query against a subset of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ghapp.core.deployed_urls import DeploymentSeen, Page, PageWanted, StatusSeen

# GitHub's most nodes for one connection.
PAGE_SIZE = 100
# Statuses read per deployment: an Actions deployment has a few (queued, in_progress, success,
# later inactive); the success one is searched among them, as the REST path does.
STATUSES = 10
# Repositories in one query: 10 x 100 deployments x 10 statuses stays far below GitHub's
# 500,000-node limit and costs about 10 points of the 5,000 an hour.
REPOSITORIES_PER_QUERY = 10

FRAGMENT = f"""
fragment ghappDeployment on Deployment {{
  databaseId
  commitOid
  environment
  createdAt
  latestStatus {{ state environmentUrl logUrl }}
  statuses(first: {STATUSES}) {{ nodes {{ state environmentUrl logUrl }} }}
}}
"""


def graphql_url(api_url: str) -> str:
    """The GraphQL endpoint beside a REST API URL: `https://api.github.com/graphql`, or
    GitHub Enterprise Server's `https://HOST/api/graphql` for `https://HOST/api/v3`."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base[: -len("/v3")] + "/graphql"
    return base + "/graphql"


def deployments_query(pages: Sequence[PageWanted]) -> tuple[str, dict[str, Any]]:
    """One query reading a page of deployments (newest first) of each repository, aliased
    `r0`, `r1`, ...; and its variables."""
    params: list[str] = []
    fields: list[str] = []
    variables: dict[str, Any] = {}
    for i, page in enumerate(pages):
        owner, _, name = page.repository.partition("/")
        params += [f"$owner{i}: String!", f"$name{i}: String!", f"$after{i}: String"]
        variables.update({f"owner{i}": owner, f"name{i}": name, f"after{i}": page.after})
        fields.append(
            f"  r{i}: repository(owner: $owner{i}, name: $name{i}) {{\n"
            f"    deployments(first: {PAGE_SIZE}, after: $after{i}, "
            "orderBy: {field: CREATED_AT, direction: DESC}) {\n"
            "      pageInfo { hasNextPage endCursor }\n"
            "      nodes { ...ghappDeployment }\n"
            "    }\n"
            "  }"
        )
    query = (
        f"query ghappDeployments({', '.join(params)}) {{\n"
        + "\n".join(fields)
        + "\n  rateLimit { cost remaining resetAt }\n}\n"
        + FRAGMENT
    )
    return query, variables


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status(node: Any) -> StatusSeen | None:
    if not isinstance(node, Mapping) or not isinstance(node.get("state"), str):
        return None
    return StatusSeen(
        state=str(node["state"]).lower(),
        environment_url=_text(node.get("environmentUrl")),
        log_url=_text(node.get("logUrl")),
    )


def _deployment(node: Any) -> DeploymentSeen | None:
    if not isinstance(node, Mapping) or not isinstance(node.get("commitOid"), str):
        return None
    statuses: list[StatusSeen] = []
    connection = node.get("statuses")
    listed = connection.get("nodes") if isinstance(connection, Mapping) else None
    for item in [node.get("latestStatus"), *(listed if isinstance(listed, list) else [])]:
        status = _status(item)
        if status is not None and status not in statuses:
            statuses.append(status)
    database_id = node.get("databaseId")
    return DeploymentSeen(
        commit=str(node["commitOid"]),
        environment=_text(node.get("environment")),
        created_at=_time(node.get("createdAt")),
        statuses=tuple(statuses),
        database_id=database_id if isinstance(database_id, int) else None,
    )


def read_pages(data: Any, count: int) -> list[Page | None]:
    """Each repository's page from an answer's `data`, in query order; None where GitHub
    gave none (the repository unknown, not readable, or the answer cut short)."""
    pages: list[Page | None] = []
    for i in range(count):
        repository = data.get(f"r{i}") if isinstance(data, Mapping) else None
        connection = repository.get("deployments") if isinstance(repository, Mapping) else None
        if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
            pages.append(None)
            continue
        info = connection.get("pageInfo")
        info = info if isinstance(info, Mapping) else {}
        found = [_deployment(node) for node in connection["nodes"]]
        pages.append(
            Page(
                deployments=tuple(d for d in found if d is not None),
                has_next=bool(info.get("hasNextPage")),
                end_cursor=_text(info.get("endCursor")),
            )
        )
    return pages
