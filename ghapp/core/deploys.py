"""The deployment state machine: given a deployment and an event, the new deployment and the
actions to take. Pure code: no I/O, no clock (time comes in with the events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, get_args

from pydantic import Field

from ghapp.core import progress as jobs_progress
from ghapp.core import report_markdown
from ghapp.core.causes import CauseRules, Failure, classify_jobs, default_rules
from ghapp.core.models import (
    CallbackInfo,
    Cause,
    Concurrency,
    Deployment,
    DeploymentKind,
    DeploymentRequest,
    FailedJob,
    OnFailure,
    Progress,
    ReasonValue,
    RollbackStarted,
    Run,
    Verdict,
)
from ghapp.core.progress import JobObserved

# Internal progress, finer than the public `state`: `concluding` means GitHub said the run
# completed and ghapp is gathering what the verdict needs (jobs, logs, the deployed URL).
Phase = Literal["dispatched", "in_progress", "concluding", "completed"]

_STATUS_RANK = {
    "requested": 0,
    "pending": 0,
    "waiting": 0,
    "queued": 0,
    "in_progress": 1,
    "completed": 2,
}
_REASONS = frozenset(get_args(ReasonValue))
# Failures that start no automatic rollback: nothing was deployed, or someone chose to stop it.
NO_ROLLBACK_REASONS = frozenset({"dispatch_rejected", "superseded", "cancelled"})
# GitHub's annotation on a waiting run its concurrency group cancelled for a newer one.
GROUP_CANCEL_MARK = "higher priority waiting request"
# How stale `last_heard_at` may be before a repeated event is worth a write.
HEARD_RESOLUTION = timedelta(seconds=5)


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
    # When ghapp learnt the run completed: the start of the verdict latency it reports.
    run_completed_seen_at: datetime | None = None
    on_failure: OnFailure = "report"
    concurrency: Concurrency = "queue"
    # A newer deployment of the environment asked for this one to stop (cancel_previous).
    superseded: bool = False
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


@dataclass(frozen=True)
class FailureGathered:
    """The failed jobs of a failed run were read, with the one-line summary."""

    failed_jobs: list[FailedJob]
    summary: str
    at: datetime
    # Classified where the report was gathered (with the configured rules); None: classify here.
    cause: Cause | None = None


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
    """GitHub's late answer to a dispatch recorded before it came (the run, when it says)."""

    run_id: int | None
    html_url: str | None
    correlation_id: str | None
    at: datetime


@dataclass(frozen=True)
class DispatchRefused:
    """GitHub's late answer to a dispatch recorded before it came: a refusal, with why."""

    message: str
    at: datetime
    rules: CauseRules | None = None


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


Action = GatherFailure | FindDeployedUrl | SendCallback | SendStarted | StartRollback


@dataclass
class Transition:
    """The outcome of one event: the record after it and what to do next."""

    record: DeploymentRecord
    actions: list[Action] = field(default_factory=list)
    changed: bool = False
    # Only `last_heard_at` moved: nothing is lost if the write comes a little later, or never.
    liveness_only: bool = False


# --- constructors -----------------------------------------------------------------------


def new_deployment(
    deployment_id: str,
    request: DeploymentRequest,
    *,
    ref: str,
    callback_url: str | None,
    installation_id: int | None,
    run_id: int | None,
    html_url: str | None,
    now: datetime,
    correlation_id: str | None = None,
    default_environment: str = "production",
    kind: DeploymentKind = "deploy",
    rollback_of: str | None = None,
    typical_run_seconds: float | None = None,
) -> DeploymentRecord:
    """A deployment GitHub has just accepted."""
    run = Run(id=run_id, attempt=1, html_url=html_url, status="queued") if run_id else None
    return DeploymentRecord(
        id=deployment_id,
        repository=request.repository,
        workflow=request.workflow,
        ref=ref,
        inputs=dict(request.inputs),
        environment=environment_of(request, default_environment),
        metadata=dict(request.metadata),
        kind=kind,
        rollback_of=rollback_of,
        on_failure=request.on_failure,
        concurrency=request.concurrency,
        state="dispatched",
        run=run,
        callback=CallbackInfo(url=callback_url),
        created_at=now,
        updated_at=now,
        installation_id=installation_id,
        dispatched_at=now,
        last_heard_at=now,
        correlation_id=correlation_id,
        notify=list(request.notify),
        typical_run_seconds=typical_run_seconds,
        progress=Progress() if run else None,
    )


def environment_of(request: DeploymentRequest, default: str) -> str:
    """The environment a request deploys to: `inputs.environment`, else the configured default."""
    named = request.inputs.get("environment")
    return str(named) if named not in (None, "") else default


def rejected_deployment(
    deployment_id: str,
    request: DeploymentRequest,
    *,
    ref: str,
    callback_url: str | None,
    message: str,
    now: datetime,
    default_environment: str = "production",
    kind: DeploymentKind = "deploy",
    rollback_of: str | None = None,
    rules: CauseRules | None = None,
) -> Transition:
    """A deployment GitHub refused to dispatch: completed at once, its callback queued."""
    record = new_deployment(
        deployment_id,
        request,
        ref=ref,
        callback_url=callback_url,
        installation_id=None,
        run_id=None,
        html_url=None,
        now=now,
        default_environment=default_environment,
        kind=kind,
        rollback_of=rollback_of,
    )
    return _complete(record, _rejected(record, message, rules), now)


def _rejected(record: DeploymentRecord, message: str, rules: CauseRules | None) -> Verdict:
    verdict = Verdict(
        status="failure",
        reason="dispatch_rejected",
        summary=f"GitHub refused to dispatch {record.workflow} on {record.repository}@"
        f"{record.ref}: {message}",
    )
    # The evidence is GitHub's own message, not ghapp's sentence around it.
    verdict.cause = _rules(rules).classify(Failure(reason="dispatch_rejected", log=message))
    return verdict


def report_started(record: DeploymentRecord) -> datetime:
    """When gathering the verdict began: REPORT_TIMEOUT counts from here."""
    return record.run_completed_seen_at or record.updated_at


def report_deadline(record: DeploymentRecord, report_timeout: float) -> datetime:
    """When the verdict goes out with what is known, gathered or not."""
    return report_started(record) + timedelta(seconds=report_timeout)


# --- the machine ------------------------------------------------------------------------


def apply(record: DeploymentRecord, event: Event) -> Transition:
    """Apply one event to a deployment; repeated and out-of-order events are harmless."""
    if isinstance(event, RollbackDecided):
        return _on_rollback_decided(record, event)
    if record.held_verdict is not None:
        return Transition(record)  # the verdict is decided; only its rollback is awaited
    if isinstance(event, Superseded):
        return _on_superseded(record, event)
    if isinstance(event, RunObserved):
        return _on_run(record, event)
    if isinstance(event, JobObserved):
        return _on_jobs(record, event)
    if isinstance(event, EnvironmentObserved):
        return _on_environment(record, event)
    if isinstance(event, DeployedUrlFound):
        return _on_deployed_url(record, event)
    if isinstance(event, FailureGathered):
        return _on_failure_gathered(record, event)
    if isinstance(event, RunSearched):
        return _on_run_searched(record, event)
    if isinstance(event, DispatchAnswered):
        return _on_dispatch_answered(record, event)
    if isinstance(event, DispatchRefused):
        return _on_dispatch_refused(record, event)
    return _on_deadlines(record, event)


def pending_actions(record: DeploymentRecord) -> list[Action]:
    """The work a stored deployment still needs, so a restart can pick it up."""
    if record.held_verdict is not None:
        return [StartRollback(record.repository, record.environment)]
    if record.phase != "concluding" or record.run is None:
        return []
    return [_conclude_action(record, record.run)]


def _on_run(record: DeploymentRecord, event: RunObserved) -> Transition:
    run = record.run
    if run is not None and run.id != event.run_id:
        return Transition(record)  # not our run: never report the wrong one
    if record.phase == "completed":
        if run is not None and event.attempt > run.attempt:
            return _on_rerun(record, event)
        return Transition(record)
    if run is not None and event.attempt < run.attempt:
        return Transition(record)
    heard = max(record.last_heard_at, event.at)
    current_rank = _STATUS_RANK.get(run.status or "", -1) if run else -1
    new_rank = _STATUS_RANK.get(event.status, 0)
    same_attempt = run is not None and event.attempt == run.attempt
    if same_attempt and new_rank <= current_rank:
        # A late or repeated event says only that the run is alive; the polling clock needs
        # that to a few seconds, not a write per webhook.
        if heard - record.last_heard_at < HEARD_RESOLUTION:
            return Transition(record)
        alive = record.model_copy(deep=True)
        alive.last_heard_at = heard
        return Transition(alive, changed=True, liveness_only=True)
    updated = record.model_copy(deep=True)
    updated.last_heard_at = heard
    updated.run = _run_of(event, run)
    updated.head_sha = event.head_sha or updated.head_sha
    updated.updated_at = event.at
    if event.started_at is not None and (run is None or event.attempt >= run.attempt):
        updated.run_started_at = event.started_at
    _refresh_progress(updated)
    if event.status != "completed":
        if new_rank >= 1:
            return _start(updated)
        return Transition(updated, changed=True)
    updated.run_completed_at = event.updated_at or event.at
    updated.state = "in_progress"
    updated.phase = "concluding"
    updated.run_completed_seen_at = event.at
    if event.conclusion == "success" and updated.deployed_url_seen:
        return _complete(updated, _success(updated, updated.deployed_url_seen), event.at)
    return Transition(updated, [_conclude_action(updated, updated.run)], changed=True)


def _start(updated: DeploymentRecord) -> Transition:
    """The run is known to be going: `in_progress`, and the started callback if asked for."""
    first = updated.state == "dispatched"
    updated.state = updated.phase = "in_progress"
    actions: list[Action] = []
    if first and "deployment.started" in updated.notify:
        actions.append(SendStarted())
    return Transition(updated, actions, changed=True)


def _refresh_progress(record: DeploymentRecord) -> None:
    if record.run is None:
        return
    current = record.progress or Progress()
    record.progress = jobs_progress.estimate(
        current, record.run_started_at, record.typical_run_seconds
    )


def _on_jobs(record: DeploymentRecord, event: JobObserved) -> Transition:
    run = record.run
    if run is None or run.id != event.run_id or event.attempt != run.attempt:
        return Transition(record)
    before = record.progress or Progress()
    after = jobs_progress.merge(before, event.jobs)
    after = jobs_progress.estimate(after, record.run_started_at, record.typical_run_seconds)
    starts = record.phase == "dispatched" and jobs_progress.started(event.jobs)
    heard = max(record.last_heard_at, event.at)
    if after == record.progress and not starts:
        if heard - record.last_heard_at < HEARD_RESOLUTION or record.phase == "completed":
            return Transition(record)
        alive = record.model_copy(deep=True)
        alive.last_heard_at = heard
        return Transition(alive, changed=True, liveness_only=True)
    updated = record.model_copy(deep=True)
    updated.progress = after
    updated.updated_at = max(updated.updated_at, event.at)
    if record.phase == "completed":
        # A job's last report may come after the run's: kept, though no stream shows it.
        return Transition(updated, changed=True)
    updated.last_heard_at = heard
    if starts:
        assert updated.run is not None
        if _STATUS_RANK.get(updated.run.status or "", -1) < 1:
            updated.run = updated.run.model_copy(update={"status": "in_progress"})
        return _start(updated)
    return Transition(updated, changed=True)


def _on_environment(record: DeploymentRecord, event: EnvironmentObserved) -> Transition:
    if record.run is None or record.run.id != event.run_id or record.phase == "completed":
        return Transition(record)
    if event.state != "success" or not event.environment_url:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.deployed_url_seen = event.environment_url
    updated.last_heard_at = max(updated.last_heard_at, event.at)
    updated.updated_at = event.at
    if updated.phase == "concluding" and updated.run and updated.run.conclusion == "success":
        return _complete(updated, _success(updated, event.environment_url), event.at)
    return Transition(updated, changed=True)


def _on_deployed_url(record: DeploymentRecord, event: DeployedUrlFound) -> Transition:
    if record.phase != "concluding" or record.run is None or record.run.conclusion != "success":
        return Transition(record)
    url = record.deployed_url_seen or event.url
    return _complete(record.model_copy(deep=True), _success(record, url), event.at)


def _on_failure_gathered(record: DeploymentRecord, event: FailureGathered) -> Transition:
    if record.phase != "concluding" or record.run is None:
        return Transition(record)
    reason = verdict_reason(record.run.conclusion)
    if reason == "cancelled" and (record.superseded or _group_cancelled(event.failed_jobs)):
        reason = "superseded"
    verdict = Verdict(
        status="failure",
        reason=reason,
        summary=event.summary,
        failed_jobs=event.failed_jobs,
        # Superseded is decided here, after the reporter classified the run as cancelled.
        cause=(
            event.cause
            if event.cause is not None and reason != "superseded"
            else classify_jobs(default_rules(), reason, event.failed_jobs)
        ),
    )
    return _complete(record.model_copy(deep=True), verdict, event.at)


def _group_cancelled(jobs: list[FailedJob]) -> bool:
    return any(GROUP_CANCEL_MARK in a.message.lower() for job in jobs for a in job.annotations)


def _on_superseded(record: DeploymentRecord, event: Superseded) -> Transition:
    if record.phase == "completed" or record.superseded:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.superseded = True
    updated.updated_at = event.at
    if updated.run is None:
        # No run to cancel yet: ghapp stops following this deployment now.
        verdict = Verdict(
            status="failure",
            reason="superseded",
            summary=f"Superseded by {event.by} before its run was identified; "
            "ghapp stopped following it.",
        )
        verdict.cause = default_rules().classify(Failure(reason="superseded", log=""))
        return _complete(updated, verdict, event.at)
    return Transition(updated, changed=True)


def _on_rollback_decided(record: DeploymentRecord, event: RollbackDecided) -> Transition:
    if record.held_verdict is None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    verdict = updated.held_verdict
    assert verdict is not None
    updated.held_verdict = None
    if event.deployment_id is not None and event.to is not None:
        verdict.rollback = RollbackStarted(deployment_id=event.deployment_id, to=event.to)
        verdict.summary += f" Rolling back to {event.to} ({event.deployment_id})."
    return _complete(updated, verdict, event.at, hold=False)


def _on_run_searched(record: DeploymentRecord, event: RunSearched) -> Transition:
    if record.run is not None or record.ambiguity == event.ambiguity:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.ambiguity = event.ambiguity
    return Transition(updated, changed=True)


def _on_dispatch_answered(record: DeploymentRecord, event: DispatchAnswered) -> Transition:
    # Only a deployment still waiting for its run: the listing may have found it meanwhile.
    if record.phase != "dispatched" or record.run is not None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.updated_at = event.at
    # GitHub's answer restarts the polling clock, as a webhook does.
    updated.last_heard_at = max(updated.last_heard_at, event.at)
    if event.run_id is not None:
        updated.run = Run(id=event.run_id, attempt=1, html_url=event.html_url, status="queued")
        _refresh_progress(updated)
    elif event.correlation_id is not None and updated.correlation_id is None:
        updated.correlation_id = event.correlation_id
    else:
        return Transition(record)
    return Transition(updated, changed=True)


def _on_dispatch_refused(record: DeploymentRecord, event: DispatchRefused) -> Transition:
    if record.phase != "dispatched" or record.run is not None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    return _complete(updated, _rejected(updated, event.message, event.rules), event.at)


def _on_report_deadline(record: DeploymentRecord, event: DeadlinesChecked) -> Transition:
    run = record.run
    if run is None or event.at < report_deadline(record, event.report_timeout):
        return Transition(record)
    limit = f"{event.report_timeout:g} s (REPORT_TIMEOUT)"
    if run.conclusion == "success":
        url = record.deployed_url_seen
        where = f" to {url}" if url else f"; its environment URL could not be read within {limit}"
        verdict = Verdict(
            status="success",
            summary=f"Deployed {record.repository}@{record.ref} (run {run.id}){where}.",
            deployed_url=url,
        )
    else:
        verdict = Verdict(
            status="failure",
            reason=verdict_reason(run.conclusion),
            summary=f"Run {run.id} ended with {run.conclusion or 'failure'}; its failed jobs "
            f"could not be read from GitHub within {limit}, so this verdict has no job details.",
        )
        verdict.cause = _rules(event.rules).classify(
            Failure(reason=verdict.reason, log=verdict.summary)
        )
    return _complete(record.model_copy(deep=True), verdict, event.at)


def _on_deadlines(record: DeploymentRecord, event: DeadlinesChecked) -> Transition:
    if record.phase == "completed":
        return Transition(record)
    if record.phase == "concluding":
        return _on_report_deadline(record, event)
    waited = (event.at - record.dispatched_at).total_seconds()
    if record.run is None:
        if waited < event.run_lookup_timeout:
            return Transition(record)
        detail = f" ({record.ambiguity})" if record.ambiguity else ""
        verdict = Verdict(
            status="failure",
            reason="run_not_found",
            summary=f"No run of {record.workflow} on {record.repository}@{record.ref} could be "
            f"identified within {event.run_lookup_timeout:g} s of the dispatch{detail}.",
        )
        verdict.cause = _rules(event.rules).classify(
            Failure(reason="run_not_found", log=verdict.summary)
        )
        return _complete(record.model_copy(deep=True), verdict, event.at)
    if waited < event.run_timeout:
        return Transition(record)
    verdict = Verdict(
        status="failure",
        reason="timed_out",
        summary=f"Run {record.run.id} was still {record.run.status or 'running'} after "
        f"{event.run_timeout:g} s; ghapp stopped waiting for it.",
    )
    verdict.cause = _rules(event.rules).classify(Failure(reason="timed_out", log=verdict.summary))
    return _complete(record.model_copy(deep=True), verdict, event.at)


def _conclude_action(record: DeploymentRecord, run: Run) -> Action:
    if run.conclusion == "success":
        return FindDeployedUrl(run_id=run.id, head_sha=record.head_sha)
    return GatherFailure(run_id=run.id, attempt=run.attempt, conclusion=run.conclusion or "")


def _success(record: DeploymentRecord, url: str | None) -> Verdict:
    where = f" to {url}" if url else "; the run reported no environment URL"
    run_id = record.run.id if record.run else "?"
    return Verdict(
        status="success",
        summary=f"Deployed {record.repository}@{record.ref} (run {run_id}){where}.",
        deployed_url=url,
    )


def _rules(rules: CauseRules | None) -> CauseRules:
    return rules if rules is not None else default_rules()


def _complete(
    record: DeploymentRecord, verdict: Verdict, now: datetime, *, hold: bool = True
) -> Transition:
    if hold and _starts_rollback(record, verdict):
        # The callback waits until the rollback is started, so it can name it.
        record.held_verdict = verdict
        record.phase = "concluding"
        record.updated_at = now
        return Transition(
            record, [StartRollback(record.repository, record.environment)], changed=True
        )
    if verdict.status == "failure":
        verdict.report = report_markdown.render(record, verdict)
    record.verdict = verdict
    record.state = record.phase = "completed"
    record.completed_at = now
    record.updated_at = now
    return Transition(record, [SendCallback()], changed=True)


def _starts_rollback(record: DeploymentRecord, verdict: Verdict) -> bool:
    return (
        verdict.status == "failure"
        and record.on_failure == "rollback"
        and verdict.reason not in NO_ROLLBACK_REASONS
    )


def _run_of(event: RunObserved, previous: Run | None) -> Run:
    return Run(
        id=event.run_id,
        attempt=event.attempt,
        html_url=event.html_url or (previous.html_url if previous else None),
        status=event.status,
        conclusion=event.conclusion,
    )


def _on_rerun(record: DeploymentRecord, event: RunObserved) -> Transition:
    # A manual re-run of a reported run: recorded on the deployment, never a second verdict.
    known = next((r for r in record.reruns if r.attempt == event.attempt), None)
    if known and _STATUS_RANK.get(known.status or "", -1) >= _STATUS_RANK.get(event.status, 0):
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.reruns = [r for r in updated.reruns if r.attempt != event.attempt]
    updated.reruns.append(_run_of(event, record.run))
    updated.updated_at = event.at
    return Transition(updated, changed=True)


def verdict_reason(conclusion: str | None) -> ReasonValue:
    """The verdict reason for a run conclusion that is not success."""
    value = conclusion or "failure"
    return value if value in _REASONS else "failure"  # type: ignore[return-value]
