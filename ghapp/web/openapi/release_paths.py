"""The OpenAPI description of the releases, rollback and statistics routes (see releases_api)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ghapp.web.http import IDEMPOTENCY_KEY_PATTERN
from ghapp.web.openapi.parts import RETRY_AFTER, UNAUTHORIZED, describe, json_answer, ref


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


def paths() -> dict[str, Any]:
    """The path items of the releases, rollback and statistics routes."""
    name_params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("owner", "repo")
    ]
    env_param = {"name": "environment", "in": "path", "required": True,
                 "schema": {"type": "string"}, "example": "production"}
    environments = describe(
        "listEnvironments",
        "The repository's environments, each with its current release and the one a "
        "rollback would restore",
        {"200": json_answer("EnvironmentList", "the environments"), "401": UNAUTHORIZED},
        tag="releases",
        parameters=name_params,
    )
    releases = describe(
        "listReleases",
        "The releases (successful deployments) of an environment, newest first",
        {
            "200": json_answer("ReleaseList", "the releases"),
            "401": UNAUTHORIZED,
            "422": json_answer("ErrorBody", "limit is out of range"),
        },
        tag="releases",
        parameters=[
            *name_params,
            env_param,
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}},
        ],
    )
    rollback = describe(
        "rollback",
        "Deploy an earlier release again: the same workflow on the default branch, with "
        "inputs environment and version",
        {
            "202": json_answer("Deployment", "dispatched: kind rollback, rollback_of the release"),
            "200": json_answer("Deployment", "replay of an Idempotency-Key with the same body"),
            "400": json_answer("ErrorBody", "the body is not JSON"),
            "401": UNAUTHORIZED,
            "408": json_answer("ErrorBody", "the body did not arrive within 30 s of the headers"),
            "409": json_answer(
                "ErrorBody",
                "no such earlier release (error no_release), or this Idempotency-Key was used "
                "with another body, or its first request is still being answered "
                "(error in_progress)",
            ),
            "413": json_answer("ErrorBody", "the body is over 1 MiB"),
            "422": json_answer("ErrorBody", "the body breaks the schema, or callback_url's host is "
                        "not allowed"),
            "503": json_answer("ErrorBody", "GitHub or ghapp's database could not be reached; "
                               "nothing was dispatched", headers=RETRY_AFTER),
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
    stats = describe(
        "getStats",
        "Deployment statistics per repository and environment over the last `days`",
        {
            "200": json_answer("StatsAnswer", "one entry per repository and environment with "
                        "deployments in the window"),
            "401": UNAUTHORIZED,
            "422": json_answer("ErrorBody", "days is out of range"),
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
