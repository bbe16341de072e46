"""`verdict.report`: a failure as Markdown, to hand as is to a developer or an agent."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ghapp.core.models import Annotation, FailedJob, Verdict

if TYPE_CHECKING:
    from ghapp.core.deploy_record import DeploymentRecord

LIMIT = 16 * 1024  # bytes of UTF-8
MAX_ANNOTATIONS = 20
_BACKTICKS = re.compile(r"`+")
_CUT_MARKER = "\n_(The report was cut here to stay within 16 KiB; the run has the rest.)_\n"
_OUTCOMES = {
    "failure": "failed",
    "cancelled": "was cancelled",
    "timed_out": "timed out",
    "startup_failure": "failed to start",
    "action_required": "is waiting for an approval",
    "dispatch_rejected": "was refused by GitHub",
    "run_not_found": "lost its run",
    "stale": "went stale",
}


def render(record: DeploymentRecord, verdict: Verdict) -> str:
    """The report of a failure verdict: at most 16 KiB, fences never cut."""
    head = _head(record, verdict)
    jobs = verdict.failed_jobs
    job_heads = [_job_head(job) for job in jobs]
    fixed = _size(head) + sum(_size(part) for part in job_heads) + 40 * len(jobs)
    budget = max(0, (LIMIT - len(_CUT_MARKER) - fixed) // max(1, len(jobs)))
    parts = [head]
    for job, job_head in zip(jobs, job_heads, strict=True):
        parts.append(job_head)
        if job.log_excerpt.strip():
            parts.append(_fenced(job.log_excerpt, budget))
    return _cut("\n".join(parts).rstrip("\n") + "\n")


def _head(record: DeploymentRecord, verdict: Verdict) -> str:
    outcome = _OUTCOMES.get(verdict.reason or "failure", "failed")
    lines = [
        f"# Deploy of {record.repository}@{record.ref} to {record.environment} {outcome}",
        "",
    ]
    cause = verdict.cause
    if cause is not None:
        retry = "retrying may well work" if cause.retryable else "retrying will not help"
        lines.append(f"**Cause:** {cause.category} ({retry}; rule `{cause.rule}`)")
        lines.append("")
        lines.append(f"**What to do:** {cause.hint}")
        lines.append("")
        if cause.evidence:
            lines += ["**Evidence:**", "", *_fence_lines(cause.evidence), ""]
    lines += [f"**Summary:** {_one_line(verdict.summary)}", ""]
    links = [f"- Deployment: `{record.id}`"]
    if record.run is not None and record.run.html_url:
        links.append(f"- Run: {record.run.html_url} (attempt {record.run.attempt})")
    lines += [*links, ""]
    return "\n".join(lines)


def _job_head(job: FailedJob) -> str:
    conclusion = job.conclusion or "failure"
    where = (
        f"at step {job.failed_step.number}, `{_one_line(job.failed_step.name)}`"
        if job.failed_step
        else "before any step ran"
    )
    lines = [f"## Job `{_one_line(job.name)}`: {conclusion} {where}", ""]
    if job.html_url:
        lines += [f"Job log: {job.html_url}", ""]
    if job.annotations:
        lines += ["Annotations:", "", *_annotation_lines(job.annotations), ""]
    return "\n".join(lines)


def _annotation_lines(annotations: Sequence[Annotation]) -> list[str]:
    lines = []
    for item in annotations[:MAX_ANNOTATIONS]:
        place = item.path or "(job)"
        if item.start_line is not None:
            place += f":{item.start_line}"
        lines.append(f"- {place}: {_one_line(item.message, 300)}")
    return lines


def _fenced(excerpt: str, budget: int) -> str:
    """The excerpt in a fence longer than any backtick run in it, cut to `budget` bytes."""
    lines = excerpt.rstrip("\n").split("\n")
    kept: list[str] = []
    used = 0
    # Keep the end: the excerpt leads up to its errors.
    for line in reversed(lines):
        used += len(line.encode()) + 1
        if used > budget and kept:
            break
        kept.append(line)
    kept.reverse()
    omitted = len(lines) - len(kept)
    if omitted:
        kept.insert(0, f"[... {omitted} earlier lines cut to fit the report ...]")
    return "\n".join([*_fence_lines("\n".join(kept)), ""])


def _fence_lines(text: str) -> list[str]:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def _cut(document: str) -> str:
    """The document, cut at a line outside any fence when it is over the limit."""
    if _size(document) <= LIMIT:
        return document
    budget = LIMIT - _size(_CUT_MARKER)
    used = 0
    fence: str | None = None
    last_safe = 0
    lines = document.split("\n")
    for index, line in enumerate(lines):
        used += len(line.encode()) + 1
        if used > budget:
            break
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped
        elif fence is not None and stripped == fence:
            fence = None
        if fence is None:
            last_safe = index + 1
    return "\n".join(lines[:last_safe]).rstrip("\n") + "\n" + _CUT_MARKER


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _size(text: str) -> int:
    return len(text.encode())
