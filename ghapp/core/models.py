"""Pydantic models of the public contract: requests, the Deployment resource, the verdict."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

# Callbacks besides the verdict's that a request may ask for (`notify`).
NotifyEvent = Literal["deployment.started"]

# Validation context a client passes (ghapp.client): a newer server may send enum values this
# version does not know; they are kept as plain strings instead of failing the whole answer.
LENIENT = {"lenient_enums": True}


def _lenient_enum(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    try:
        return handler(value)
    except ValidationError:
        if isinstance(value, str) and isinstance(info.context, dict) and info.context.get(
            "lenient_enums"
        ):
            return value
        raise


# The enums of the resource, lenient under the LENIENT context.
TOLERANT = WrapValidator(_lenient_enum)
TOLERANT_CONTEXT = LENIENT

DeploymentState = Annotated[Literal["dispatched", "in_progress", "completed"], TOLERANT]
VerdictStatus = Annotated[Literal["success", "failure"], TOLERANT]
ReasonValue = Literal[
    "failure",
    "cancelled",
    "timed_out",
    "startup_failure",
    "action_required",
    "stale",
    "neutral",
    "skipped",
    "dispatch_rejected",
    "run_not_found",
    "superseded",
]
Reason = Annotated[ReasonValue, TOLERANT]
DeploymentKind = Annotated[Literal["deploy", "rollback"], TOLERANT]
OnFailure = Literal["report", "rollback"]
Concurrency = Literal["queue", "cancel_previous", "reject"]
CallbackState = Annotated[Literal["pending", "delivered", "failed"], TOLERANT]
CauseCategory = Literal[
    "code", "configuration", "infrastructure", "transient", "cancelled", "unknown"
]

# GitHub's characters for an owner or a repository name; `.` and `..` are not names.
NAME_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$"
_NAME = r"(?!\.\.?/)[A-Za-z0-9._-]{1,100}/(?!\.\.?$)[A-Za-z0-9._-]{1,100}"
REPOSITORY_PATTERN = f"^{_NAME}$"
# A workflow file name, or its numeric id (a 64-bit integer).
WORKFLOW_PATTERN = r"^(?:[A-Za-z0-9_.-]{1,250}\.ya?ml|[0-9]{1,18})$"
# A branch or tag: no whitespace, no control characters. Spelt out, not `\s`: Python's and
# ECMA's (the OpenAPI description's) `\s` differ.
REF_PATTERN = (
    r"^[^\x00-\x20\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
    r"{1,255}$"
)
REF_MAX = 255
CALLBACK_URL_MAX = 2048
# GitHub's limits on a dispatch's inputs.
INPUTS_MAX_KEYS = 25
INPUTS_MAX_CHARS = 65_535
INPUT_NAME_MAX = 100

_REPOSITORY = re.compile(REPOSITORY_PATTERN)
_WORKFLOW = re.compile(WORKFLOW_PATTERN)
_REF = re.compile(REF_PATTERN)
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def valid_name(name: str) -> bool:
    """Whether an owner or repository name keeps to GitHub's characters (and is not . or ..)."""
    return re.fullmatch(NAME_PATTERN, name) is not None


def callback_url_problem(url: str) -> str | None:
    """What is wrong with a callback URL (scheme, credentials, characters, port), or None."""
    if _CONTROL.search(url):
        return "must not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry a user or password"
    if not parts.hostname:
        return "must name a host"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if port == 0:
        return "has an invalid port"
    return None

# Metadata keys are used in query strings (`metadata.KEY=VALUE`): keep them plain.
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,40}$"
_METADATA_KEY = re.compile(METADATA_KEY_PATTERN)
METADATA_MAX_KEYS = 20
METADATA_MAX_VALUE = 500


def check_metadata(value: dict[str, str]) -> dict[str, str]:
    """The orchestrator's own ids as DESIGN.md bounds them, or a ValueError naming the key."""
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"at most {METADATA_MAX_KEYS} keys")
    for key, item in value.items():
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(
                f"key {key[:50]!r}: 1 to 40 letters, digits or '_', '.', ':', '-'"
            )
        if len(item) > METADATA_MAX_VALUE or "\x00" in item:
            raise ValueError(f"value of {key!r}: at most {METADATA_MAX_VALUE} characters, no NUL")
    return value


def check_callback_url(value: str | None) -> str | None:
    """An http(s) URL ghapp may call back (see callback_url_problem), or a ValueError."""
    if value is not None and (problem := callback_url_problem(value)) is not None:
        raise ValueError(problem)
    return value



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

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _REPOSITORY.fullmatch(value):
            raise ValueError(
                "must be 'owner/name': one '/', GitHub's characters [A-Za-z0-9._-], "
                "neither part '.' or '..'"
            )
        return value

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: str) -> str:
        if not _WORKFLOW.fullmatch(value):
            raise ValueError("must be a workflow file name such as 'deploy.yml', or its id")
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not _REF.fullmatch(value):
            raise ValueError(
                f"must be a branch or tag name: 1 to {REF_MAX} characters, no spaces"
            )
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


class Run(BaseModel):
    """The workflow run a deployment is watching."""

    id: int
    attempt: int = 1
    html_url: str | None = None
    status: str | None = None
    conclusion: str | None = None


class FailedStep(BaseModel):
    """The first step of a job that failed or was cancelled."""

    number: int
    name: str


class Annotation(BaseModel):
    """A check-run annotation of a failed job."""

    path: str
    start_line: int | None = None
    annotation_level: str | None = None
    message: str


class FailedJob(BaseModel):
    """A job of the run whose conclusion is not success, skipped or neutral."""

    id: int
    name: str
    html_url: str | None = None
    conclusion: str | None = None
    failed_step: FailedStep | None = None
    log_excerpt: str = ""
    annotations: list[Annotation] = Field(default_factory=list)


class RollbackStarted(BaseModel):
    """The automatic rollback a failure started: the new deployment and the release it restores."""

    deployment_id: str
    to: str


class Cause(BaseModel):
    """Why a deployment failed, and so who should act: the rule that decided and its evidence."""

    category: CauseCategory = Field(
        description="code: a developer; configuration: whoever sets up the repository; "
        "infrastructure: whoever runs the server; transient: retry; cancelled; unknown"
    )
    retryable: bool = Field(description="the same deploy may well succeed if retried")
    rule: str = Field(description="id of the rule that decided ('unknown' when none matched)")
    hint: str = Field(description="one sentence: what to do next")
    evidence: str | None = Field(
        default=None, description="the log line or message that decided"
    )

    _category = field_validator("category", mode="wrap")(_lenient_enum)


class Verdict(BaseModel):
    """The outcome of a deployment, as the orchestrator receives it."""

    status: VerdictStatus
    reason: Reason | None = None
    summary: str
    deployed_url: str | None = None
    failed_jobs: list[FailedJob] = Field(default_factory=list)
    cause: Cause | None = Field(default=None, description="every failure verdict; null on success")
    report: str | None = Field(
        default=None,
        description="Markdown (at most 16 KiB) to hand as is to a developer or an agent; "
        "null on success",
    )
    rollback: RollbackStarted | None = Field(
        default=None,
        description="the automatic rollback a failure started (on_failure rollback), else null",
    )


class ProgressStep(BaseModel):
    """One step of a job, as GitHub last reported it."""

    number: int
    name: str
    status: str
    conclusion: str | None = None


class ProgressJob(BaseModel):
    """One job of the run with its steps."""

    id: int
    name: str
    status: str
    conclusion: str | None = None
    html_url: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    steps: list[ProgressStep] = Field(default_factory=list)


class Progress(BaseModel):
    """How far the run has got: its jobs and steps, and when it should be done."""

    jobs: list[ProgressJob] = Field(default_factory=list)
    steps_completed: int = 0
    steps_total: int = 0
    estimated_completion_at: datetime | None = Field(
        default=None,
        description="the run's start plus the median run time of the last (at most 5) "
        "successful deployments of the same repository, workflow and environment",
    )


class CallbackInfo(BaseModel):
    """Where the verdict goes and how delivering it is going."""

    url: str | None
    state: CallbackState = "pending"
    attempts: int = 0


class Deployment(BaseModel):
    """The Deployment resource: the GET body and the callback body."""

    id: str
    repository: str
    workflow: str
    ref: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    environment: str = Field(
        default="production",
        description="inputs.environment, else the DEFAULT_ENVIRONMENT setting",
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    kind: DeploymentKind = "deploy"
    rollback_of: str | None = Field(
        default=None, description="for a rollback, the deployment_id of the release it restores"
    )
    state: DeploymentState
    run: Run | None = None
    verdict: Verdict | None = None
    callback: CallbackInfo
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    progress: Progress | None = Field(
        default=None, description="jobs and steps of the run; null until the run is known"
    )
    reruns: list[Run] = Field(
        default_factory=list,
        description="manual re-runs of the reported run (attempt 2...): recorded, not reported",
    )


class DeploymentList(BaseModel):
    """Body of `GET /api/v1/deployments`."""

    deployments: list[Deployment]


class Release(BaseModel):
    """A successful deployment of a repository to an environment."""

    deployment_id: str
    ref: str
    head_sha: str | None = None
    version: str | None = Field(description="inputs.version when given, else head_sha")
    deployed_url: str | None = None
    released_at: datetime


class EnvironmentReleases(BaseModel):
    """One environment of a repository: what is live, and what a rollback would restore."""

    name: str
    current: Release | None = None
    previous: Release | None = None


class EnvironmentList(BaseModel):
    """Body of `GET /api/v1/repos/{owner}/{repo}/environments`."""

    environments: list[EnvironmentReleases]


class ReleaseList(BaseModel):
    """Body of `GET /api/v1/repos/{owner}/{repo}/environments/{env}/releases`."""

    releases: list[Release]


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


class ErrorBody(BaseModel):
    """Every error answer of the orchestrator API."""

    error: str
    message: str
    errors: list[dict[str, Any]] | None = None
    deployment_id: str | None = Field(
        default=None, description="error conflict: the unfinished deployment of the environment"
    )
