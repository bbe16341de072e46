"""The OpenAPI description of the releases, rollback and statistics routes (see releases_api)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ghapp.web.api import IDEMPOTENCY_KEY_PATTERN


class DurationFigures(BaseModel):
    """Seconds from dispatch to verdict, over the deployments that had a run."""

    median: float | None
    p90: float | None


class RestoreFigures(BaseModel):
    """Seconds from a run of failures' first verdict to the next success's."""

    median: float | None


class StatsEntry(BaseModel):
    """One repository and environment's figures over the window."""

    repository: str
    environment: str
    deployments: int = Field(description="all of them, rollbacks included")
    successes: int
    failures: int = Field(description="failure verdicts except superseded and dispatch_rejected")
    change_failure_rate: float | None = Field(description="failures / (successes + failures)")
    duration_seconds: DurationFigures
    deployments_per_day: float = Field(description="deployments / days")
    time_to_restore_seconds: RestoreFigures


class StatsAnswer(BaseModel):
    """Answer of `GET /api/v1/stats`."""

    since: datetime = Field(description="the window's start (on created_at)")
    stats: list[StatsEntry]


MODELS: list[tuple[type[BaseModel], Any]] = [(StatsAnswer, "serialization")]


def paths(
    operation: Any, json: Any, ref: Any, unauthorized: dict[str, Any], retry_after: dict[str, Any]
) -> dict[str, Any]:
    """The path items, built with openapi.py's helpers (passed in: no import cycle)."""
    name_params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("owner", "repo")
    ]
    env_param = {"name": "environment", "in": "path", "required": True,
                 "schema": {"type": "string"}, "example": "production"}
    environments = operation(
        "listEnvironments",
        "The repository's environments, each with its current release and the one a "
        "rollback would restore",
        {"200": json("EnvironmentList", "the environments"), "401": unauthorized},
        tag="releases",
        parameters=name_params,
    )
    releases = operation(
        "listReleases",
        "The releases (successful deployments) of an environment, newest first",
        {
            "200": json("ReleaseList", "the releases"),
            "401": unauthorized,
            "422": json("ErrorBody", "limit is out of range"),
        },
        tag="releases",
        parameters=[
            *name_params,
            env_param,
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}},
        ],
    )
    rollback = operation(
        "rollback",
        "Deploy an earlier release again: the same workflow on the default branch, with "
        "inputs environment and version",
        {
            "202": json("Deployment", "dispatched: kind rollback, rollback_of the release"),
            "200": json("Deployment", "replay of an Idempotency-Key with the same body"),
            "400": json("ErrorBody", "the body is not JSON"),
            "401": unauthorized,
            "408": json("ErrorBody", "the body did not arrive within 30 s of the headers"),
            "409": json(
                "ErrorBody",
                "no such earlier release (error no_release), or this Idempotency-Key was used "
                "with another body, or its first request is still being answered "
                "(error in_progress)",
            ),
            "413": json("ErrorBody", "the body is over 1 MiB"),
            "422": json("ErrorBody", "the body breaks the schema, or callback_url's host is "
                        "not allowed"),
            "503": json("ErrorBody", "GitHub or ghapp's database could not be reached; "
                        "nothing was dispatched", headers=retry_after),
        },
        tag="releases",
        parameters=[
            *name_params,
            env_param,
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}},
        ],
        requestBody={
            "required": False,
            "content": {"application/json": {"schema": ref("RollbackRequest")}},
        },
    )
    stats = operation(
        "getStats",
        "Deployment statistics per repository and environment over the last `days`",
        {
            "200": json("StatsAnswer", "one entry per repository and environment with "
                        "deployments in the window"),
            "401": unauthorized,
            "422": json("ErrorBody", "days is out of range"),
        },
        tag="releases",
        parameters=[
            {"name": "repository", "in": "query", "schema": {"type": "string"}},
            {"name": "environment", "in": "query", "schema": {"type": "string"}},
            {"name": "days", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}},
        ],
    )
    base = "/api/v1/repos/{owner}/{repo}/environments"
    return {
        base: {"get": environments},
        base + "/{environment}/releases": {"get": releases},
        base + "/{environment}/rollback": {"post": rollback},
        "/api/v1/stats": {"get": stats},
    }
