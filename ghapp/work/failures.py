"""Gather a failed run's report from GitHub: failed jobs, their log excerpts and annotations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import gidgethub

from ghapp.core import reports
from ghapp.core.causes import CauseRules, classify_jobs, default_rules
from ghapp.core.deploys import FailureGathered, verdict_reason
from ghapp.core.logs.excerpt import ExcerptBuilder
from ghapp.core.models import Annotation, FailedJob
from ghapp.github.client import GitHubClient, GitHubUnavailable, LogsNotReady, LogUnavailable
from ghapp.github.joblogs import LogHostFailed, read_job_log

log = logging.getLogger("ghapp.failures")
MAX_ANNOTATIONS = 20
_LEVEL_ORDER = {"failure": 0, "warning": 1, "notice": 2}
# Several failed jobs are read side by side, but not so many that GitHub sees a burst.
PARALLEL_JOBS = 4


def sort_annotations(items: Sequence[Mapping[str, Any]]) -> list[Annotation]:
    """Annotations as the verdict carries them: failures first, then warnings, then notices."""
    ordered = sorted(items, key=lambda a: _LEVEL_ORDER.get(str(a.get("annotation_level")), 3))
    return [
        Annotation(
            path=str(a.get("path") or ""),
            start_line=a.get("start_line"),
            annotation_level=a.get("annotation_level"),
            message=str(a.get("message") or ""),
        )
        for a in ordered[:MAX_ANNOTATIONS]
    ]


def _check_run_id(job: Mapping[str, Any]) -> int:
    # check_run_url ends with the check run's id, which is the job's id on GitHub.com.
    path = urlsplit(str(job.get("check_run_url") or "")).path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else int(job["id"])


class FailureReporter:
    """Reads what a failure verdict needs; every GitHub call goes through the client."""

    def __init__(
        self,
        github: GitHubClient,
        *,
        retry_base: float = 1.0,
        report_timeout: float = 300.0,
        rules: CauseRules | None = None,
    ) -> None:
        self.github = github
        self.retry_base = retry_base
        self.report_timeout = report_timeout
        # Not `rules or ...`: its truth is its length, which reads and compiles every rule.
        self.rules = rules if rules is not None else default_rules()

    async def gather(
        self,
        repository: str,
        installation_id: int,
        run_id: int,
        attempt: int,
        conclusion: str,
        *,
        deadline: float | None = None,
    ) -> FailureGathered:
        """The failed jobs of one run attempt, each with its excerpt, and the summary.

        `deadline` (event-loop time) bounds the whole: a log not read by then is reported
        unavailable; without the list of jobs by then, TimeoutError."""
        async with asyncio.timeout_at(deadline):
            jobs = await self.github.jobs(repository, installation_id, run_id, attempt)
        failed = reports.failed_jobs_of(jobs)
        shown = failed[: reports.MAX_REPORTED_JOBS]
        limit = asyncio.Semaphore(PARALLEL_JOBS)

        async def one(job: Mapping[str, Any]) -> tuple[FailedJob, str | None]:
            return await self._job(repository, installation_id, job, limit, deadline)

        results = await asyncio.gather(*(one(job) for job in shown))
        failed_jobs = [job for job, _ in results]
        summary = reports.run_summary(
            conclusion,
            failed_jobs,
            [first_error for _, first_error in results],
            omitted=len(failed) - len(shown),
        )
        # Classified here, with the configured rules, while the excerpts are at hand; in a
        # worker thread, as a job's log is anyone's text and the event loop must keep answering.
        cause = await asyncio.to_thread(
            classify_jobs, self.rules, verdict_reason(conclusion), failed_jobs
        )
        return FailureGathered(
            failed_jobs=failed_jobs, summary=summary, at=datetime.now(UTC), cause=cause
        )

    async def _job(
        self,
        repository: str,
        installation_id: int,
        job: Mapping[str, Any],
        limit: asyncio.Semaphore,
        deadline: float | None,
    ) -> tuple[FailedJob, str | None]:
        report = reports.failed_job(job)
        steps = list(job.get("steps") or [])
        number = report.failed_step.number if report.failed_step else None
        first_error: str | None = None
        # Annotations first: one cheap call that names the error even when the log is late.
        try:
            async with asyncio.timeout_at(deadline), limit:
                raw = await self.github.annotations(repository, installation_id, _check_run_id(job))
            report.annotations = sort_annotations(raw)
        except (GitHubUnavailable, gidgethub.BadRequest, TimeoutError) as exc:
            log.warning("annotations unavailable", extra={"job_id": report.id, "error": str(exc)})
        # A verdict without the log beats no verdict: whatever goes wrong, say why it is missing.
        why: str | None = None
        try:
            async with asyncio.timeout_at(deadline) as budget, limit:
                excerpt = await read_job_log(
                    self.github,
                    repository,
                    installation_id,
                    report.id,
                    lambda: ExcerptBuilder(steps=steps, failed_step_number=number),
                    retry_base=self.retry_base,
                )
            report.log_excerpt = excerpt.text
            first_error = excerpt.first_error
        except TimeoutError as exc:
            why = (
                f"not read within REPORT_TIMEOUT ({self.report_timeout:g} s)"
                if budget.expired()
                else str(exc) or "the download timed out"
            )
        except (LogsNotReady, LogUnavailable, LogHostFailed, GitHubUnavailable) as exc:
            why = str(exc)
        except Exception as exc:  # the log host is another origin: anything may happen there
            why = str(exc) or exc.__class__.__name__
            log.warning("job log failed unexpectedly", exc_info=True)
        if why is not None:
            report.log_excerpt = f"(log unavailable: {why})"
            log.warning("job log unavailable", extra={"job_id": report.id, "error": why})
        if first_error is None:
            first_error = next(
                (a.message for a in report.annotations if a.annotation_level == "failure"), None
            )
        return report, first_error
