"""The deployment state machine: given a deployment and an event, the new deployment and the
actions to take. Pure code: no I/O, no clock (time comes in with the events)."""

from __future__ import annotations

from ghapp.core.deploy_dispatch import (
    environment_of,
    new_deployment,
    on_dispatch_answered,
    on_dispatch_doubted,
    on_dispatch_not_sent,
    on_dispatch_refused,
    on_run_searched,
    policy_rejected_deployment,
    recorded_deployment,
    rejected_deployment,
)
from ghapp.core.deploy_events import (
    Action,
    CancelRun,
    DeadlinesChecked,
    DeployedUrlFound,
    DispatchAnswered,
    DispatchDoubted,
    DispatchNotSent,
    DispatchRefused,
    DropRecord,
    EnvironmentObserved,
    Event,
    FailureGathered,
    FindDeployedUrl,
    GateRejected,
    GatherFailure,
    ReviewDecided,
    ReviewRequested,
    RollbackDecided,
    RunObserved,
    RunSearched,
    SendCallback,
    SendStarted,
    SendWaiting,
    StartRollback,
    Superseded,
    Transition,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_review import on_review_decided, on_review_requested
from ghapp.core.deploy_rollback import on_rollback_decided, on_superseded
from ghapp.core.deploy_runs import on_jobs, on_run
from ghapp.core.deploy_verdict import (
    complete,
    conclude_action,
    on_deadlines,
    on_deployed_url,
    on_environment,
    on_failure_gathered,
    policy_verdict,
    report_deadline,
    verdict_reason,
)
from ghapp.core.progress import JobObserved

__all__ = [
    "Action",
    "CancelRun",
    "DeadlinesChecked",
    "DeployedUrlFound",
    "DeploymentRecord",
    "DispatchAnswered",
    "DispatchDoubted",
    "DispatchNotSent",
    "DispatchRefused",
    "DropRecord",
    "EnvironmentObserved",
    "Event",
    "FailureGathered",
    "FindDeployedUrl",
    "GateRejected",
    "GatherFailure",
    "JobObserved",
    "ReviewDecided",
    "ReviewRequested",
    "RollbackDecided",
    "RunObserved",
    "RunSearched",
    "SendCallback",
    "SendStarted",
    "SendWaiting",
    "StartRollback",
    "Superseded",
    "Transition",
    "apply",
    "environment_of",
    "new_deployment",
    "pending_actions",
    "policy_rejected_deployment",
    "recorded_deployment",
    "rejected_deployment",
    "report_deadline",
    "verdict_reason",
]


# --- the machine ------------------------------------------------------------------------


def apply(record: DeploymentRecord, event: Event) -> Transition:
    """Apply one event to a deployment; repeated and out-of-order events are harmless."""
    if isinstance(event, RollbackDecided):
        return on_rollback_decided(record, event)
    if record.held_verdict is not None:
        return Transition(record)  # the verdict is decided; only its rollback is awaited
    if isinstance(event, Superseded):
        return on_superseded(record, event)
    if isinstance(event, GateRejected):
        return on_gate_rejected(record, event)
    if isinstance(event, ReviewRequested):
        return on_review_requested(record, event)
    if isinstance(event, ReviewDecided):
        return on_review_decided(record, event)
    if isinstance(event, RunObserved):
        return on_run(record, event)
    if isinstance(event, JobObserved):
        return on_jobs(record, event)
    if isinstance(event, EnvironmentObserved):
        return on_environment(record, event)
    if isinstance(event, DeployedUrlFound):
        return on_deployed_url(record, event)
    if isinstance(event, FailureGathered):
        return on_failure_gathered(record, event)
    if isinstance(event, RunSearched):
        return on_run_searched(record, event)
    if isinstance(event, DispatchAnswered):
        return on_dispatch_answered(record, event)
    if isinstance(event, DispatchRefused):
        return on_dispatch_refused(record, event)
    if isinstance(event, DispatchNotSent):
        return on_dispatch_not_sent(record, event)
    if isinstance(event, DispatchDoubted):
        return on_dispatch_doubted(record, event)
    return on_deadlines(record, event)


def on_gate_rejected(record: DeploymentRecord, event: GateRejected) -> Transition:
    """A policy refused the run at the gate: the deployment fails `policy_rejected` (GitHub
    ends the run without starting it)."""
    if record.phase == "completed":
        return Transition(record)
    updated = record.model_copy(deep=True)
    verdict = policy_verdict(updated, event.policy, event.reason, event.retry_after)
    return complete(updated, verdict, event.at)


def pending_actions(record: DeploymentRecord) -> list[Action]:
    """The work a stored deployment still needs, so a restart can pick it up."""
    if record.held_verdict is not None:
        return [StartRollback(record.repository, record.environment)]
    if record.phase != "concluding" or record.run is None:
        return []
    return [conclude_action(record, record.run)]
