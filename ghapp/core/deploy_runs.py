"""A deployment's run as GitHub reports it: its status, its jobs' progress, later re-runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from ghapp.core import progress as jobs_progress
from ghapp.core.deploy_events import Action, CancelRun, RunObserved, SendStarted, Transition
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_verdict import complete, conclude_action, success_verdict
from ghapp.core.models import Progress, Run
from ghapp.core.progress import JobObserved

_STATUS_RANK = {
    "requested": 0,
    "pending": 0,
    "waiting": 0,
    "queued": 0,
    "in_progress": 1,
    "completed": 2,
}
# How stale `last_heard_at` may be before a repeated event is worth a write.
HEARD_RESOLUTION = timedelta(seconds=5)


def on_run(record: DeploymentRecord, event: RunObserved) -> Transition:
    """Follow the run's status; its completion starts the conclusion."""
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
    refresh_progress(updated)
    bound: list[Action] = []
    if run is None:
        # The run is found: whatever was in doubt about its dispatch is settled.
        if updated.phase == "recorded":
            updated.phase = "dispatched"
        updated.dispatch_doubt = updated.lookup_seconds = None
        if updated.superseded:
            bound.append(CancelRun(event.run_id))
    if event.status != "completed":
        if new_rank >= 1:
            _end_wait(updated, event.at)
            started = _start(updated)
            started.actions[:0] = bound
            return started
        return Transition(updated, bound, changed=True)
    updated.run_completed_at = event.updated_at or event.at
    updated.state = "in_progress"
    updated.phase = "concluding"
    updated.run_completed_seen_at = event.at
    # A deployment that named outputs reads them first (with the conclusion's action).
    if event.conclusion == "success" and updated.deployed_url_seen and not updated.outputs_wanted:
        return complete(updated, success_verdict(updated, updated.deployed_url_seen), event.at)
    return Transition(updated, [conclude_action(updated, updated.run)], changed=True)


def _end_wait(updated: DeploymentRecord, at: datetime) -> None:
    """The run started: whoever it waited for let it go (an approval's webhook may be lost).
    A completed run keeps it: its failure may be a rejection, read from its approvals."""
    waiting = updated.progress.waiting if updated.progress is not None else None
    if waiting is None or updated.progress is None:
        return
    updated.waited_seconds += max((at - waiting.since).total_seconds(), 0.0)
    updated.progress = updated.progress.model_copy(update={"waiting": None})


def _start(updated: DeploymentRecord) -> Transition:
    """The run is known to be going: `in_progress`, and the started callback if asked for."""
    first = updated.state == "dispatched"
    updated.state = updated.phase = "in_progress"
    actions: list[Action] = []
    if first and "deployment.started" in updated.notify:
        actions.append(SendStarted())
    return Transition(updated, actions, changed=True)


def refresh_progress(record: DeploymentRecord) -> None:
    """Re-estimate the record's progress from the run's start and typical time."""
    if record.run is None:
        return
    current = record.progress or Progress()
    record.progress = jobs_progress.estimate(
        current, record.run_started_at, record.typical_run_seconds
    )


def on_jobs(record: DeploymentRecord, event: JobObserved) -> Transition:
    """Merge the jobs' progress; a first started job starts the deployment."""
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
