"""The bodies the orchestrator sends: a deployment request and a rollback request."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
)

from ghapp.core.enums import Concurrency, NotifyEvent, OnFailure
from ghapp.core.outputs import OUTPUT_NAME_PATTERN, OUTPUTS_MAX, check_names
from ghapp.core.validation import (
    CALLBACK_URL_MAX,
    INPUT_NAME_MAX,
    INPUTS_MAX_CHARS,
    INPUTS_MAX_KEYS,
    REF_MAX,
    REF_RE,
    REPOSITORY_RE,
    WORKFLOW_RE,
    check_callback_url,
    check_metadata,
)


class Override(BaseModel):
    """`override`: the request passes gate freezes (its token needs the `override` scope)."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class DeploymentRequest(BaseModel):
    """Body of `POST /api/v1/deployments`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # The patterns are checked by the validators below (Python's re: GitHub's names need a
    # look-ahead) and published in the OpenAPI description (ghapp.web.openapi).
    repository: str = Field(description="owner/name", examples=["acme/shop"])
    workflow: str = Field(default="deploy.yml", description="workflow file name or id")
    ref: str | None = Field(default=None, description="branch or tag; the default branch if absent")
    inputs: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=INPUT_NAME_MAX)],
        StrictStr | StrictInt | StrictFloat | StrictBool,
    ] = Field(
        default_factory=dict,
        max_length=INPUTS_MAX_KEYS,
        description=(
            f"the workflow's inputs: at most {INPUTS_MAX_KEYS} keys and "
            f"{INPUTS_MAX_CHARS} characters as JSON (GitHub's limits)"
        ),
    )
    callback_url: str | None = Field(
        default=None,
        description="ORCHESTRATOR_CALLBACK_URL if absent",
        max_length=CALLBACK_URL_MAX,
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="the orchestrator's own ids: stored, echoed in every answer and callback, "
        "never sent to GitHub",
        examples=[{"thread_id": "th_42"}],
    )

    on_failure: OnFailure = Field(
        default="report",
        description="'rollback': after a failure verdict, put the environment's current "
        "release back at once",
    )
    concurrency: Concurrency = Field(
        default="queue",
        description="against unfinished deployments of the same repository and environment",
    )
    notify: list[NotifyEvent] = Field(
        default_factory=list,
        description="extra callbacks: `deployment.started` is sent once when the run starts",
        examples=[["deployment.started"]],
    )
    outputs: list[
        Annotated[str, StringConstraints(pattern=OUTPUT_NAME_PATTERN, max_length=100)]
    ] = Field(
        default_factory=list,
        max_length=OUTPUTS_MAX,
        json_schema_extra={"uniqueItems": True},
        description="names of the run's outputs wanted in `verdict.outputs` (at most 20), read "
        "from the run's `ghapp-outputs` artifact",
        examples=[["image_digest", "version"]],
    )

    override: Override | None = Field(
        default=None,
        description="passes gate freezes, at request time and at the gate; the token needs the "
        "`override` scope, and the reason is kept with the deployment and in the audit trail",
        examples=[{"reason": "hotfix for INC-42"}],
    )

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str]) -> list[str]:
        return check_names(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not REPOSITORY_RE.fullmatch(value):
            raise ValueError(
                "must be 'owner/name': one '/', GitHub's characters [A-Za-z0-9._-], "
                "neither part '.' or '..'"
            )
        return value

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: str) -> str:
        if not WORKFLOW_RE.fullmatch(value):
            raise ValueError("must be a workflow file name such as 'deploy.yml', or its id")
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not REF_RE.fullmatch(value):
            raise ValueError(f"must be a branch or tag name: 1 to {REF_MAX} characters, no spaces")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for item in value.values():
            # A number must fit in a signed 64-bit integer's range (as the OpenAPI says).
            if isinstance(item, int | float) and not isinstance(item, bool) and abs(item) >= 2**63:
                raise ValueError("number inputs must be within a signed 64-bit integer's range")
        if len(json.dumps(value, separators=(",", ":"))) > INPUTS_MAX_CHARS:
            raise ValueError(f"must be at most {INPUTS_MAX_CHARS} characters as JSON")
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return check_callback_url(value)


class RollbackRequest(BaseModel):
    """Body of `POST /api/v1/repos/{owner}/{repo}/environments/{env}/rollback`."""

    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(
        default=None, description="the release's deployment_id; null: the one before the current"
    )
    callback_url: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return check_callback_url(value)
