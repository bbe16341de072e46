"""Pydantic models of the public contract: the Deployment resource, the verdict, releases and
errors; the requests (`ghapp.core.request_models`) are re-exported from here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ghapp.core.enums import (
    CallbackState,
    CauseCategory,
    DeploymentKind,
    DeploymentState,
    Reason,
    VerdictStatus,
    lenient_enum,
)
from ghapp.core.request_models import DeploymentRequest, RollbackRequest

__all__ = [
    "Annotation",
    "CallbackInfo",
    "Cause",
    "Deployment",
    "DeploymentList",
    "DeploymentRequest",
    "EnvironmentList",
    "EnvironmentReleases",
    "ErrorBody",
    "FailedJob",
    "FailedStep",
    "Progress",
    "ProgressJob",
    "ProgressStep",
    "Release",
    "ReleaseList",
    "RollbackRequest",
    "RollbackStarted",
    "Run",
    "Verdict",
]


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
    retry_after: datetime | None = Field(
        default=None,
        description="category policy: when the blocking policy (a freeze) ends; else null",
    )

    _category = field_validator("category", mode="wrap")(lenient_enum)


class Verdict(BaseModel):
    """The outcome of a deployment, as the orchestrator receives it."""

    status: VerdictStatus
    reason: Reason | None = None
    summary: str = Field(
        description="one line a person reads first; text from the job or GitHub in it (names, "
        "the first error, GitHub's message) is quoted as Markdown code spans"
    )
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
    outputs: dict[str, str] = Field(
        default_factory=dict,
        description="the run's outputs the request named (`outputs`), read from its "
        "`ghapp-outputs` artifact: remote text; a missing name is absent",
    )


class ProgressStep(BaseModel):
    """One step of a job, as GitHub last reported it."""

    number: int
    name: str
    status: str
    conclusion: str | None = None
    started_at: datetime | None = Field(
        default=None, description="GitHub's start of the step (UTC); null until it starts"
    )
    completed_at: datetime | None = Field(
        default=None, description="GitHub's end of the step (UTC); null until it ends"
    )


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


class Waiting(BaseModel):
    """Who a waiting run is waiting for: reviewers, the gate, or a wait timer."""

    kind: Literal["review", "gate", "timer"]
    environment: str
    reviewers: list[str] = Field(
        default_factory=list, description="logins, and teams written org/slug"
    )
    since: datetime


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
    waiting: Waiting | None = Field(
        default=None, description="who the run waits for (a person must act); null otherwise"
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
    requested_by: str | None = Field(
        default=None,
        description="the name of the token that asked; null for an automatic rollback",
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


class ErrorBody(BaseModel):
    """Every error answer of the orchestrator API."""

    error: str
    message: str
    errors: list[dict[str, Any]] | None = None
    deployment_id: str | None = Field(
        default=None, description="error conflict: the unfinished deployment of the environment"
    )
