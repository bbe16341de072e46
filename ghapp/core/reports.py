"""Failure reports: which jobs of a run failed, at which step, and the line a person reads first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ghapp.core import untrusted
from ghapp.core.models import Annotation, Cause, FailedJob, FailedStep

# Conclusions of a job that are not a failure of it (docs/reference/deployment.md, "Failed jobs").
_NOT_FAILED = frozenset({"success", "skipped", "neutral"})
_STEP_FAILED = frozenset({"failure", "cancelled"})
# A run with a hundred failed matrix jobs: report the first ones fully and count the rest.
MAX_REPORTED_JOBS = 10


def failed_jobs_of(jobs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The jobs of a run to report: completed ones whose conclusion is a failure."""
    return [job for job in jobs if job.get("conclusion") not in _NOT_FAILED]


def failed_step_of(steps: Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    """A job's first step (by number) that failed or was cancelled, or None if none did."""
    ordered = sorted(steps or (), key=lambda step: step.get("number") or 0)
    return next((step for step in ordered if step.get("conclusion") in _STEP_FAILED), None)


def one_line(text: str, limit: int = 300) -> str:
    """Remote text cleaned (see ghapp.core.untrusted), on one line, at most `limit` characters."""
    return untrusted.one_line(text, limit)


def failed_job(job: Mapping[str, Any]) -> FailedJob:
    """A FailedJob from the jobs API's job object, before logs and annotations are read."""
    step = failed_step_of(job.get("steps"))
    return FailedJob(
        id=int(job["id"]),
        name=untrusted.clean(str(job.get("name") or job["id"])),
        html_url=job.get("html_url"),
        conclusion=job.get("conclusion"),
        failed_step=FailedStep(number=int(step["number"]), name=untrusted.clean(str(step["name"])))
        if step
        else None,
    )


def job_summary(job: FailedJob, first_error: str | None) -> str:
    """One line for one failed job: where it failed and the first error it printed."""
    verb = {
        "timed_out": "timed out",
        "cancelled": "was cancelled",
        "action_required": "is waiting for an approval",
        "startup_failure": "failed to start",
    }.get(job.conclusion or "", "failed")
    # Remote text (names, the error line) is quoted as Markdown code spans, so a reader, person
    # or agent, tells ghapp's words from the job's (see docs/untrusted-text.md).
    name = untrusted.code_span(job.name)
    if job.failed_step is None:
        where = " before any step ran" if verb == "failed" else ""
        line = f"Job {name} {verb}{where}"
    else:
        line = f"Job {name} {verb} at step {untrusted.code_span(job.failed_step.name)}"
    message = one_line(first_error or "")
    return f"{line}: {untrusted.code_span(message)}" if message else f"{line}."


def cleaned_job(job: FailedJob) -> FailedJob:
    """A failed job with every remote text in it cleaned: names, excerpt, annotations."""
    clean = untrusted.clean
    step = job.failed_step
    return job.model_copy(
        update={
            "name": clean(job.name),
            "html_url": clean(job.html_url) if job.html_url is not None else None,
            "conclusion": clean(job.conclusion) if job.conclusion is not None else None,
            "failed_step": step.model_copy(update={"name": clean(step.name)}) if step else None,
            "log_excerpt": clean(job.log_excerpt),
            "annotations": [
                Annotation(
                    path=clean(item.path),
                    start_line=item.start_line,
                    annotation_level=item.annotation_level,
                    message=clean(item.message),
                )
                for item in job.annotations
            ],
        }
    )


def cleaned_cause(cause: Cause | None) -> Cause | None:
    """A cause whose evidence (a log line or a message: remote text) is cleaned."""
    if cause is None or cause.evidence is None:
        return cause
    return cause.model_copy(update={"evidence": untrusted.clean(cause.evidence)})


def run_summary(
    conclusion: str,
    jobs: Sequence[FailedJob],
    first_errors: Sequence[str | None],
    *,
    omitted: int = 0,
) -> str:
    """The verdict's summary: the first failed job's line, and how many others failed."""
    if not jobs:
        return f"The run ended with conclusion '{conclusion}' but no job failed."
    line = job_summary(jobs[0], first_errors[0] if first_errors else None)
    others = len(jobs) - 1 + omitted
    if others:
        line += f" ({others} other job{'s' if others > 1 else ''} failed too.)"
    return line
