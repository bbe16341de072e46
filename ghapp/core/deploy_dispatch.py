"""A deployment from its dispatch until its run is known: the write-ahead record, GitHub's
answer to the dispatch (a run, a refusal, or doubt), and the search for the run.

Record first, then dispatch. A deployment is committed in phase `recorded` (its request, its
Idempotency-Key, its correlation id) before its dispatch request leaves ghapp; what happens
next is one of the events below, and every crash point leaves a record that ends in exactly
one verdict without a second dispatch:

| moment (what is stored)                       | event                 | then                    |
|-----------------------------------------------|-----------------------|-------------------------|
| nothing: the commit failed                    | (none)                | 503, nothing was sent   |
| `recorded`; the request never left (refused,  | DispatchNotSent       | DropRecord: 503, a retry|
|   lookups late)                               |                       |   with the key dispatches|
| `recorded`; GitHub answered 2xx               | DispatchAnswered      | `dispatched`, run bound |
|   (204: no run named)                         |                       |   (or searched by title)|
| `recorded`; GitHub answered 4xx               | DispatchRefused       | verdict dispatch_rejected|
| `recorded`; a 5xx answer to the dispatch      | DispatchDoubted (60 s)| `dispatched`, run null, |
|                                               |                       |   searched by correlation|
| `recorded`; answer late, or the connection    | DispatchDoubted       | `dispatched`, run null; |
|   broke after sending                         |                       |   a late answer binds it|
| `recorded`; ghapp died (SIGKILL, machine) or  | DispatchDoubted, from | searched by correlation |
|   the database failed after the commit        |   the orphan sweep    |   id; a retry with the  |
|                                               |   (ORPHAN_AFTER)      |   key answers it (200)  |
| `dispatched` without a run, none found within | DeadlinesChecked      | run_not_found; cause    |
|   the lookup time                             |                       |   transient if doubted  |

A `recorded` deployment is shown to its own request only (never in listings, statistics or
the page): if its request never left it is dropped, as if never asked. A repeat of its
Idempotency-Key while it is `recorded` and young is `409 in_progress`; once the sweep has
doubted it (its process is gone) the repeat is answered with it. A `recorded` deployment that
a newer `cancel_previous` supersedes stays until its dispatch is answered: a run then bound is
cancelled (CancelRun), and an outcome without a run completes it as `superseded`.
"""

from __future__ import annotations

from datetime import datetime

from ghapp.core.causes import CauseRules
from ghapp.core.deploy_events import (
    Action,
    CancelRun,
    DispatchAnswered,
    DispatchDoubted,
    DispatchNotSent,
    DispatchRefused,
    DropRecord,
    RunSearched,
    Transition,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_rollback import superseded_verdict
from ghapp.core.deploy_runs import refresh_progress
from ghapp.core.deploy_verdict import complete, policy_verdict, rejected_verdict
from ghapp.core.enums import DeploymentKind
from ghapp.core.models import CallbackInfo, DeploymentRequest, Progress, Run

# A `recorded` deployment older than this lost the process that was dispatching it (a
# request is answered within 5 s): the orphan sweep doubts it, and a repeat of its key is
# answered with it. Younger, a repeat of its key is `409 in_progress`.
ORPHAN_AFTER = 15.0
ORPHANED = (
    "ghapp stopped before it recorded GitHub's answer to the dispatch, so it may have "
    "started the run"
)


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
        outputs_wanted=list(request.outputs),
        override_reason=request.override.reason if request.override is not None else None,
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
    record = _without_run(
        deployment_id, request, ref=ref, callback_url=callback_url, now=now,
        default_environment=default_environment, kind=kind, rollback_of=rollback_of,
    )
    return complete(record, rejected_verdict(record, message, rules), now)


def _without_run(
    deployment_id: str,
    request: DeploymentRequest,
    *,
    ref: str,
    callback_url: str | None,
    now: datetime,
    default_environment: str,
    kind: DeploymentKind,
    rollback_of: str | None,
) -> DeploymentRecord:
    """A deployment that never had a run (refused before or by the dispatch)."""
    return new_deployment(
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


def policy_rejected_deployment(
    deployment_id: str,
    request: DeploymentRequest,
    *,
    ref: str,
    callback_url: str | None,
    policy: str | None,
    reason: str,
    retry_after: datetime | None,
    now: datetime,
    default_environment: str = "production",
    kind: DeploymentKind = "deploy",
    rollback_of: str | None = None,
) -> Transition:
    """A deploy a gate policy refused when it was requested: completed at once, nothing
    dispatched, its callback queued."""
    record = _without_run(
        deployment_id, request, ref=ref, callback_url=callback_url, now=now,
        default_environment=default_environment, kind=kind, rollback_of=rollback_of,
    )
    return complete(record, policy_verdict(record, policy, reason, retry_after), now)


def on_run_searched(record: DeploymentRecord, event: RunSearched) -> Transition:
    """Record why a search found no run, once per reason."""
    if record.run is not None or record.ambiguity == event.ambiguity:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.ambiguity = event.ambiguity
    return Transition(updated, changed=True)


def recorded_deployment(
    deployment_id: str,
    request: DeploymentRequest,
    *,
    ref: str,
    callback_url: str | None,
    installation_id: int | None,
    correlation_id: str | None,
    now: datetime,
    default_environment: str = "production",
    kind: DeploymentKind = "deploy",
    rollback_of: str | None = None,
    typical_run_seconds: float | None = None,
) -> DeploymentRecord:
    """A deployment about to be dispatched: committed before its request leaves (`recorded`)."""
    record = new_deployment(
        deployment_id,
        request,
        ref=ref,
        callback_url=callback_url,
        installation_id=installation_id,
        run_id=None,
        html_url=None,
        now=now,
        correlation_id=correlation_id,
        default_environment=default_environment,
        kind=kind,
        rollback_of=rollback_of,
        typical_run_seconds=typical_run_seconds,
    )
    record.phase = "recorded"
    return record


def _waiting_for_answer(record: DeploymentRecord) -> bool:
    return record.phase in ("recorded", "dispatched") and record.run is None


def on_dispatch_answered(record: DeploymentRecord, event: DispatchAnswered) -> Transition:
    """Take the run (or correlation id) GitHub's answer to the dispatch names."""
    # Only a deployment still waiting for its run: the listing may have found it meanwhile.
    if not _waiting_for_answer(record):
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.updated_at = event.at
    # GitHub's answer restarts the polling clock, as a webhook does.
    updated.last_heard_at = max(updated.last_heard_at, event.at)
    was_recorded = updated.phase == "recorded"
    updated.phase = "dispatched"
    updated.dispatch_doubt = None
    updated.lookup_seconds = None
    actions: list[Action] = []
    if event.run_id is not None:
        updated.run = Run(id=event.run_id, attempt=1, html_url=event.html_url, status="queued")
        refresh_progress(updated)
        if updated.superseded:
            actions.append(CancelRun(event.run_id))
    elif event.correlation_id is not None and updated.correlation_id is None:
        updated.correlation_id = event.correlation_id
    elif not was_recorded and record.dispatch_doubt is None:
        return Transition(record)
    if updated.superseded and updated.run is None:
        return _superseded_without_run(updated, event.at)
    return Transition(updated, actions, changed=True)


def on_dispatch_refused(record: DeploymentRecord, event: DispatchRefused) -> Transition:
    """Complete a deployment whose dispatch GitHub refused."""
    if not _waiting_for_answer(record):
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.phase = "dispatched"
    return complete(updated, rejected_verdict(updated, event.message, event.rules), event.at)


def on_dispatch_not_sent(record: DeploymentRecord, event: DispatchNotSent) -> Transition:
    """A recorded dispatch whose request never left: the record goes, as if never asked."""
    if record.phase != "recorded":
        # Doubted by the sweep meanwhile (shown since): its lookup gives it a verdict.
        return Transition(record)
    return Transition(record, [DropRecord()])


def on_dispatch_doubted(record: DeploymentRecord, event: DispatchDoubted) -> Transition:
    """GitHub may have the dispatch: show the deployment and look for its run by title."""
    if not _waiting_for_answer(record):
        return Transition(record)
    if record.phase == "dispatched" and record.dispatch_doubt == event.why:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.phase = "dispatched"
    updated.dispatch_doubt = event.why
    if event.lookup_seconds is not None:
        updated.lookup_seconds = event.lookup_seconds
    updated.updated_at = event.at
    if updated.superseded:
        return _superseded_without_run(updated, event.at)
    return Transition(updated, changed=True)


def _superseded_without_run(record: DeploymentRecord, at: datetime) -> Transition:
    return complete(record, superseded_verdict(record), at)
