"""What the state machine takes in (events) and hands out (actions, in a Transition)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ghapp.core.causes import CauseRules
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.models import Cause, FailedJob
from ghapp.core.progress import JobObserved
from ghapp.core.times import github_time

# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunObserved:
    """GitHub told us about the run: a workflow_run webhook or a poll answer."""

    run_id: int
    attempt: int
    status: str
    conclusion: str | None
    html_url: str | None
    head_sha: str | None
    at: datetime
    # GitHub's `run_started_at`, and its `updated_at` once completed (for the estimates).
    started_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class EnvironmentObserved:
    """A deployment_status of the run: its environment URL once it succeeded."""

    run_id: int
    state: str
    environment_url: str | None
    at: datetime


@dataclass(frozen=True)
class DeployedUrlFound:
    """The fallback lookup of the run's environment URL finished (url may be None)."""

    url: str | None
    at: datetime
    # The run's outputs the deployment asked for (None: not read), and why they could not be.
    outputs: dict[str, str] | None = None
    outputs_problem: str | None = None


@dataclass(frozen=True)
class FailureGathered:
    """The failed jobs of a failed run were read, with the one-line summary."""

    failed_jobs: list[FailedJob]
    summary: str
    at: datetime
    # Classified where the report was gathered (with the configured rules); None: classify here.
    cause: Cause | None = None
    outputs: dict[str, str] | None = None
    outputs_problem: str | None = None


@dataclass(frozen=True)
class GateRejected:
    """The gate refused the deployment's own run (a policy blocked it when GitHub asked)."""

    at: datetime
    policy: str | None
    reason: str
    retry_after: datetime | None = None


@dataclass(frozen=True)
class ReviewRequested:
    """GitHub holds the run for required reviewers (a `deployment_review.requested`)."""

    run_id: int
    environment: str
    reviewers: tuple[str, ...]
    since: datetime


@dataclass(frozen=True)
class ReviewDecided:
    """A reviewer approved or rejected the run's deployment (`deployment_review`)."""

    run_id: int
    environment: str
    state: str
    reviewer: str
    comment: str
    at: datetime


@dataclass(frozen=True)
class DeadlinesChecked:
    """A clock tick: give up on a run never found, on a run going on too long, or on a
    verdict's gathering (its report) taking longer than `report_timeout`."""

    at: datetime
    run_lookup_timeout: float
    run_timeout: float
    report_timeout: float = 300.0
    rules: CauseRules | None = None


@dataclass(frozen=True)
class DispatchAnswered:
    """GitHub accepted a recorded dispatch (the run, when its answer names it)."""

    run_id: int | None
    html_url: str | None
    correlation_id: str | None
    at: datetime


@dataclass(frozen=True)
class DispatchRefused:
    """GitHub refused a recorded dispatch (a 4xx answer, now or late), with why."""

    message: str
    at: datetime
    rules: CauseRules | None = None


@dataclass(frozen=True)
class DispatchNotSent:
    """The recorded dispatch's request never left ghapp (refused connection, no lookup in
    time): nothing can have reached GitHub."""

    at: datetime


@dataclass(frozen=True)
class DispatchDoubted:
    """The recorded dispatch may have reached GitHub, and no usable answer came (a 5xx, a late
    or lost answer, a process that stopped before recording it): `why` says which, and
    `lookup_seconds` how long its run is looked for (None: RUN_LOOKUP_TIMEOUT)."""

    why: str
    at: datetime
    lookup_seconds: float | None = None


@dataclass(frozen=True)
class RunSearched:
    """A search for an unidentified run found none it could choose, and says why."""

    ambiguity: str | None
    at: datetime


@dataclass(frozen=True)
class Superseded:
    """A newer deployment of the same environment replaces this one (cancel_previous)."""

    by: str
    at: datetime


@dataclass(frozen=True)
class RollbackDecided:
    """The automatic rollback was started (its deployment and the release it restores), or
    not (deployment_id None: no release to restore)."""

    deployment_id: str | None
    to: str | None
    at: datetime


Event = (
    RunObserved
    | GateRejected
    | ReviewRequested
    | ReviewDecided
    | Superseded
    | RollbackDecided
    | JobObserved
    | EnvironmentObserved
    | DeployedUrlFound
    | FailureGathered
    | DeadlinesChecked
    | RunSearched
    | DispatchAnswered
    | DispatchRefused
    | DispatchNotSent
    | DispatchDoubted
)


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GatherFailure:
    """Read the run's failed jobs (and their logs) to build a failure verdict."""

    run_id: int
    attempt: int
    conclusion: str


@dataclass(frozen=True)
class FindDeployedUrl:
    """Look the environment URL up through the deployments API (no webhook gave it)."""

    run_id: int
    head_sha: str | None


@dataclass(frozen=True)
class SendCallback:
    """Queue the verdict's callback in the outbox (in the same transaction as the verdict)."""


@dataclass(frozen=True)
class StartRollback:
    """Put the environment's current release back (on_failure: rollback), then report."""

    repository: str
    environment: str


@dataclass(frozen=True)
class SendStarted:
    """Queue the `deployment.started` callback (in the same transaction as the new state)."""


@dataclass(frozen=True)
class SendWaiting:
    """Queue the `deployment.waiting` callback: a person must act (once per deployment)."""


@dataclass(frozen=True)
class CancelRun:
    """Cancel the run on GitHub (a superseded deployment's, once its run is known)."""

    run_id: int


@dataclass(frozen=True)
class DropRecord:
    """Delete the recorded deployment: its dispatch never left, so it never existed."""


Action = (
    GatherFailure
    | FindDeployedUrl
    | SendCallback
    | SendStarted
    | StartRollback
    | CancelRun
    | SendWaiting
    | DropRecord
)


@dataclass
class Transition:
    """The outcome of one event: the record after it and what to do next."""

    record: DeploymentRecord
    actions: list[Action] = field(default_factory=list)
    changed: bool = False
    # Only `last_heard_at` moved: nothing is lost if the write comes a little later, or never.
    liveness_only: bool = False


# --- from GitHub's objects ---------------------------------------------------------------


def run_event(run: Mapping[str, Any], at: datetime) -> RunObserved:
    """A RunObserved from a workflow run object (REST answer or webhook payload)."""
    status = str(run.get("status") or "")
    return RunObserved(
        run_id=int(run["id"]),
        attempt=int(run.get("run_attempt") or 1),
        status=status,
        conclusion=run.get("conclusion"),
        html_url=run.get("html_url"),
        head_sha=run.get("head_sha"),
        at=at,
        started_at=github_time(run.get("run_started_at")),
        updated_at=github_time(run.get("updated_at")) if status == "completed" else None,
    )
