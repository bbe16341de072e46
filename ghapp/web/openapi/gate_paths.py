"""The OpenAPI description of the gate's routes (see gate_api)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ghapp.web.openapi.parts import UNAUTHORIZED, describe, json_answer


class GateRun(BaseModel):
    """The run GitHub asked about."""

    id: int
    html_url: str | None = None


class GateDecision(BaseModel):
    """One answer of the gate to a deployment protection rule request."""

    id: str = Field(examples=["gate_4aed467bb1d34b118666b67d"])
    repository: str
    environment: str
    run: GateRun
    sha: str | None = None
    ref: str | None = None
    actor: str | None = Field(description="who triggered the run's attempt")
    origin: Literal["ghapp", "foreign"]
    decision: Literal["approved", "rejected", "held"]
    reason: str
    decided_at: datetime
    deployment_id: str | None = Field(description="the ghapp deployment of the run, if any")
    policy: str | None = Field(default=None, description="the policy that rejected it")
    retry_after: datetime | None = None
    comment: str | None = Field(default=None, description="the comment GitHub shows")


class GateDecisionList(BaseModel):
    """Answer of `GET /api/v1/gate/decisions`."""

    decisions: list[GateDecision]


class GatePreview(BaseModel):
    """Answer of `GET /api/v1/gate/preview`: what a deploy would meet now."""

    allowed: bool
    policy: str | None
    reason: str
    retry_after: datetime | None


MODELS: list[tuple[type[BaseModel], Any]] = [
    (GateDecision, "serialization"),
    (GateDecisionList, "serialization"),
    (GatePreview, "serialization"),
]
BAD_QUERY = json_answer("ErrorBody", "a query parameter is out of range")


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def paths() -> dict[str, Any]:
    """The path items of the gate's routes."""
    listing = describe(
        "listGateDecisions",
        "The gate's decisions, newest first",
        {"200": json_answer("GateDecisionList", "the decisions"), "400": BAD_QUERY,
         "401": UNAUTHORIZED},
        tag="gate",
        parameters=[
            _query("repository", {"type": "string"}),
            _query("environment", {"type": "string"}),
            _query("origin", {"type": "string", "enum": ["ghapp", "foreign"]}),
            _query("decision", {"type": "string", "enum": ["approved", "rejected", "held"]}),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        ],
    )
    decision_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    settled: dict[str, Any] = {}
    for action, verb in (("approve", "approved"), ("reject", "rejected")):
        settled[f"/api/v1/gate/decisions/{{id}}/{action}"] = {
            "post": describe(
                f"{action}GateDecision",
                f"A held decision {verb}: GitHub is told at once",
                {
                    "200": json_answer("GateDecision", f"the decision, now {verb}"),
                    "401": UNAUTHORIZED,
                    "404": json_answer("ErrorBody", "no such decision"),
                    "409": json_answer("ErrorBody", "the decision is not held"),
                    "502": json_answer("ErrorBody", "GitHub refused the answer"),
                },
                tag="gate",
                parameters=[decision_id],
            )
        }
    preview = describe(
        "previewGate",
        "Whether a deploy to an environment would pass the gate's policies now",
        {"200": json_answer("GatePreview", "the policies' verdict"), "400": BAD_QUERY,
         "401": UNAUTHORIZED, "502": json_answer("ErrorBody", "GitHub could not resolve ref")},
        tag="gate",
        parameters=[
            _query("repository", {"type": "string", "pattern": "^[^/]+/[^/]+$"}, True),
            _query("environment", {"type": "string", "minLength": 1}, True),
            _query("ref", {"type": "string"}),
        ],
    )
    return {
        "/api/v1/gate/decisions": {"get": listing},
        **settled,
        "/api/v1/gate/preview": {"get": preview},
    }
