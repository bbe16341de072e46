"""Job and step progress of a run: what GitHub reports, merged so that nothing moves backwards.

Pure code: `workflow_job` webhooks and the jobs API both come in as `ProgressJob`s; a repeated or
late report never undoes a newer one (a job or step goes queued -> in_progress -> completed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ghapp.core.models import Progress, ProgressJob, ProgressStep
from ghapp.core.times import github_time
from ghapp.core.untrusted import clean

_RANK = {"in_progress": 1, "completed": 2}


def rank(status: str | None) -> int:
    """How far a job or step status is along (queued, waiting, pending: 0)."""
    return _RANK.get(status or "", 0)


@dataclass(frozen=True)
class JobObserved:
    """GitHub told us about jobs of the run: a workflow_job webhook or a jobs API answer."""

    run_id: int
    attempt: int
    jobs: tuple[ProgressJob, ...]
    at: datetime


def _name(value: Any) -> Any:
    """A job or step name, cleaned: whoever pushes the workflow writes it (a non-string is
    left for validation to refuse)."""
    return clean(value) if isinstance(value, str) else value or ""


def _utc(value: Any) -> datetime | None:
    """A step time in UTC: the jobs API writes them in its own zone, webhooks with `Z`."""
    moment = github_time(value)
    return None if moment is None else moment.astimezone(UTC)


def job_of(job: Mapping[str, Any]) -> ProgressJob | None:
    """A job from GitHub's JSON (webhook or REST shape); None when it is not a job."""
    steps = job.get("steps")
    if steps is None:
        steps = []
    if not isinstance(steps, list) or not all(isinstance(step, Mapping) for step in steps):
        return None
    try:
        return ProgressJob.model_validate(
            {
                "id": job.get("id"),
                "name": _name(job.get("name")),
                "status": job.get("status") or "queued",
                "conclusion": job.get("conclusion"),
                "html_url": job.get("html_url"),
                "started_at": job.get("started_at"),
                "completed_at": job.get("completed_at"),
                "steps": [
                    {
                        "number": step.get("number"),
                        "name": _name(step.get("name")),
                        "status": step.get("status") or "queued",
                        "conclusion": step.get("conclusion"),
                        "started_at": _utc(step.get("started_at")),
                        "completed_at": _utc(step.get("completed_at")),
                    }
                    for step in steps
                ],
            }
        )
    except (ValidationError, AttributeError, TypeError):
        return None


def _merge_step(old: ProgressStep, new: ProgressStep) -> ProgressStep:
    if rank(new.status) < rank(old.status):
        kept = old
    elif rank(new.status) == rank(old.status) and new.conclusion is None:
        kept = old if old.conclusion is not None else new
    else:
        kept = new
    # GitHub's start of a step never changes: a report that lacks it does not erase it.
    started = kept.started_at or old.started_at or new.started_at
    completed = kept.completed_at or (old.completed_at if kept.status == "completed" else None)
    if (started, completed) == (kept.started_at, kept.completed_at):
        return kept
    return kept.model_copy(update={"started_at": started, "completed_at": completed})


def _job_start(old: ProgressJob, new: ProgressJob) -> datetime | None:
    """When the job started: GitHub gives a job still queued its creation time as
    `started_at`, and the runner's start once it runs; the latter wins, once known."""
    for job in (old, new):
        if rank(job.status) >= 1 and job.started_at is not None:
            return job.started_at
    return old.started_at or new.started_at


def merge_job(old: ProgressJob | None, new: ProgressJob) -> ProgressJob:
    """The job after a report: the furthest status of it and of each step wins."""
    steps_new = sorted(new.steps, key=lambda s: s.number)
    if old is None:
        return new.model_copy(update={"steps": steps_new})
    behind = rank(new.status) < rank(old.status)
    base = old if behind else new
    steps = {step.number: step for step in old.steps}
    for step in steps_new:
        known = steps.get(step.number)
        steps[step.number] = step if known is None else _merge_step(known, step)
    return ProgressJob(
        id=old.id,
        name=base.name or old.name or new.name,
        status=base.status,
        conclusion=base.conclusion or (None if behind else old.conclusion),
        html_url=base.html_url or old.html_url or new.html_url,
        started_at=_job_start(old, new),
        completed_at=base.completed_at or old.completed_at,
        steps=[steps[number] for number in sorted(steps)],
    )


def merge(progress: Progress, jobs: Iterable[ProgressJob]) -> Progress:
    """The progress after these job reports, with the step counts recomputed."""
    merged = {job.id: job for job in progress.jobs}
    order = [job.id for job in progress.jobs]
    for job in jobs:
        if job.id not in merged:
            order.append(job.id)
        merged[job.id] = merge_job(merged.get(job.id), job)
    result = [merged[job_id] for job_id in order]
    return Progress(
        jobs=result,
        steps_completed=sum(1 for job in result for s in job.steps if s.status == "completed"),
        steps_total=sum(len(job.steps) for job in result),
        estimated_completion_at=progress.estimated_completion_at,
        waiting=progress.waiting,
    )


def estimate(
    progress: Progress, run_started_at: datetime | None, typical_seconds: float | None
) -> Progress:
    """Set `estimated_completion_at`: the run's (else first job's) start plus the typical run."""
    start = run_started_at or min(
        (job.started_at for job in progress.jobs if job.started_at is not None), default=None
    )
    when = None
    if start is not None and typical_seconds is not None:
        when = start + timedelta(seconds=typical_seconds)
    if when == progress.estimated_completion_at:
        return progress
    return progress.model_copy(update={"estimated_completion_at": when})


def started(jobs: Iterable[ProgressJob]) -> bool:
    """Whether any of these jobs is running or done (so the run has started)."""
    return any(rank(job.status) >= 1 for job in jobs)


def median(values: list[float]) -> float | None:
    """The median of a few numbers (None for none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
