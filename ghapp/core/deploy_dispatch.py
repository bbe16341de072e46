"""A deployment from its dispatch until its run is known: the new record, GitHub's late
answer to the dispatch (a run, or a refusal), and the search for the run."""

from __future__ import annotations

from datetime import datetime

from ghapp.core.causes import CauseRules
from ghapp.core.deploy_events import (
    DispatchAnswered,
    DispatchRefused,
    RunSearched,
    Transition,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_runs import refresh_progress
from ghapp.core.deploy_verdict import complete, rejected_verdict
from ghapp.core.enums import DeploymentKind
from ghapp.core.models import CallbackInfo, DeploymentRequest, Progress, Run


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
    return complete(record, rejected_verdict(record, message, rules), now)


def on_run_searched(record: DeploymentRecord, event: RunSearched) -> Transition:
    """Record why a search found no run, once per reason."""
    if record.run is not None or record.ambiguity == event.ambiguity:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.ambiguity = event.ambiguity
    return Transition(updated, changed=True)


def on_dispatch_answered(record: DeploymentRecord, event: DispatchAnswered) -> Transition:
    """Take the run (or correlation id) GitHub's late dispatch answer names."""
    # Only a deployment still waiting for its run: the listing may have found it meanwhile.
    if record.phase != "dispatched" or record.run is not None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.updated_at = event.at
    # GitHub's answer restarts the polling clock, as a webhook does.
    updated.last_heard_at = max(updated.last_heard_at, event.at)
    if event.run_id is not None:
        updated.run = Run(id=event.run_id, attempt=1, html_url=event.html_url, status="queued")
        refresh_progress(updated)
    elif event.correlation_id is not None and updated.correlation_id is None:
        updated.correlation_id = event.correlation_id
    else:
        return Transition(record)
    return Transition(updated, changed=True)


def on_dispatch_refused(record: DeploymentRecord, event: DispatchRefused) -> Transition:
    """Complete a still-dispatched deployment GitHub refused after all."""
    if record.phase != "dispatched" or record.run is not None:
        return Transition(record)
    updated = record.model_copy(deep=True)
    return complete(updated, rejected_verdict(updated, event.message, event.rules), event.at)
