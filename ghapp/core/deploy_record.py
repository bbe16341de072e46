"""The stored deployment: the public resource plus the state machine's own progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ghapp.core.enums import Concurrency, OnFailure
from ghapp.core.models import Deployment, Verdict
from ghapp.core.tracecontext import TraceContext

# Internal progress, finer than the public `state`: `recorded` means committed before its
# dispatch request left (write-ahead; shown nowhere but to its own request, see
# ghapp.core.deploy_dispatch); `concluding` means GitHub said the run completed and ghapp is
# gathering what the verdict needs (jobs, logs, the deployed URL).
Phase = Literal["recorded", "dispatched", "in_progress", "concluding", "completed"]


class DeploymentRecord(Deployment):
    """A Deployment plus what ghapp needs to drive it; stored whole, served as Deployment."""

    installation_id: int | None = None
    phase: Phase = "dispatched"
    dispatched_at: datetime
    last_heard_at: datetime
    head_sha: str | None = None
    correlation_id: str | None = None
    deployed_url_seen: str | None = None
    ambiguity: str | None = None
    # Why ghapp cannot tell whether GitHub took the dispatch (a 5xx, an answer that never
    # came...): its run is looked for by correlation id, and a verdict says so if none appears.
    dispatch_doubt: str | None = None
    # How long the run is looked for when shorter than RUN_LOOKUP_TIMEOUT (a 5xx: 60 s).
    lookup_seconds: float | None = None
    # When ghapp learnt the run completed: the start of the verdict latency it reports.
    run_completed_seen_at: datetime | None = None
    on_failure: OnFailure = "report"
    concurrency: Concurrency = "queue"
    # A newer deployment of the environment asked for this one to stop (cancel_previous).
    superseded: bool = False
    superseded_by: str | None = None
    # A failure verdict waiting for its automatic rollback to start, so that the callback
    # can name the rollback (`verdict.rollback`).
    held_verdict: Verdict | None = None
    version: int = Field(default=0, exclude=True)
    # Callbacks asked for besides the verdict's (`notify` of the request).
    notify: list[str] = Field(default_factory=list)
    run_started_at: datetime | None = None
    run_completed_at: datetime | None = None
    # The median run time of recent successes like this one, taken at the dispatch.
    typical_run_seconds: float | None = None
    # The run's outputs the request named; what was read of them (None: not yet), and why
    # they could not be read when they could not (see ghapp.core.outputs).
    outputs_wanted: list[str] = Field(default_factory=list)
    # The request's `override` reason: it passes gate freezes, at the request and at the gate.
    override_reason: str | None = None
    outputs_read: dict[str, str] | None = None
    outputs_problem: str | None = None
    # The deployment's trace (when tracing was on at its request): see ghapp.work.tracing.
    trace: TraceContext | None = None
    # Seconds the run spent waiting for people (reviewers) in waits that ended: not counted
    # toward RUN_TIMEOUT (nor is a wait still open, `progress.waiting.since` on).
    waited_seconds: float = 0.0
    # Whether its `deployment.waiting` callback was queued (one per deployment).
    waiting_notified: bool = False

    def run_seconds(self) -> float | None:
        """How long a successful run took (GitHub's start to its completion), else None."""
        if self.verdict is None or self.verdict.status != "success":
            return None
        if self.run_started_at is None or self.run_completed_at is None:
            return None
        return max((self.run_completed_at - self.run_started_at).total_seconds(), 0.0)

    def public(self) -> Deployment:
        """The resource as the orchestrator sees it."""
        return Deployment.model_validate(self.model_dump(include=set(Deployment.model_fields)))
