"""How a deployment concludes: the verdict from what was gathered or from a deadline, held
for an automatic rollback or completed with its callback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import get_args

from ghapp.core import outputs as outputs_core
from ghapp.core import report_markdown, reports, untrusted
from ghapp.core.causes import CauseRules, Failure, classify_jobs, default_rules
from ghapp.core.deploy_events import (
    Action,
    CancelRun,
    DeadlinesChecked,
    DeployedUrlFound,
    EnvironmentObserved,
    FailureGathered,
    FindDeployedUrl,
    GatherFailure,
    SendCallback,
    StartRollback,
    Transition,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.enums import ReasonValue
from ghapp.core.models import Cause, FailedJob, Run, Verdict

_REASONS = frozenset(get_args(ReasonValue))
# Failures that start no automatic rollback: nothing was deployed, or someone chose to stop it.
NO_ROLLBACK_REASONS = frozenset(
    {"dispatch_rejected", "superseded", "cancelled", "policy_rejected", "review_rejected"}
)
# GitHub's annotation on a waiting run its concurrency group cancelled for a newer one.
GROUP_CANCEL_MARK = "higher priority waiting request"


def report_started(record: DeploymentRecord) -> datetime:
    """When gathering the verdict began: REPORT_TIMEOUT counts from here."""
    return record.run_completed_seen_at or record.updated_at


def report_deadline(record: DeploymentRecord, report_timeout: float) -> datetime:
    """When the verdict goes out with what is known, gathered or not."""
    return report_started(record) + timedelta(seconds=report_timeout)


def on_environment(record: DeploymentRecord, event: EnvironmentObserved) -> Transition:
    """Keep the run's environment URL; a successful concluding run completes."""
    if record.run is None or record.run.id != event.run_id or record.phase == "completed":
        return Transition(record)
    if event.state != "success" or not event.environment_url:
        return Transition(record)
    updated = record.model_copy(deep=True)
    updated.deployed_url_seen = event.environment_url
    updated.last_heard_at = max(updated.last_heard_at, event.at)
    updated.updated_at = event.at
    if updated.outputs_wanted and updated.outputs_read is None:
        # The outputs are read with the fallback lookup, which then completes with this URL.
        return Transition(updated, changed=True)
    if updated.phase == "concluding" and updated.run and updated.run.conclusion == "success":
        return complete(updated, success_verdict(updated, event.environment_url), event.at)
    return Transition(updated, changed=True)


def on_deployed_url(record: DeploymentRecord, event: DeployedUrlFound) -> Transition:
    """Complete a successful run with the URL the fallback lookup found."""
    if record.phase != "concluding" or record.run is None or record.run.conclusion != "success":
        return Transition(record)
    url = record.deployed_url_seen or event.url
    updated = _with_outputs(record.model_copy(deep=True), event.outputs, event.outputs_problem)
    return complete(updated, success_verdict(record, url), event.at)


def _with_outputs(
    record: DeploymentRecord, outputs: dict[str, str] | None, problem: str | None
) -> DeploymentRecord:
    if record.outputs_wanted and (outputs is not None or problem is not None):
        record.outputs_read = outputs_core.pick(outputs or {}, record.outputs_wanted)
        record.outputs_problem = problem
    return record


def on_failure_gathered(record: DeploymentRecord, event: FailureGathered) -> Transition:
    """Complete a failed run with the failure verdict gathered for it."""
    if record.phase != "concluding" or record.run is None:
        return Transition(record)
    reason = verdict_reason(record.run.conclusion)
    if reason == "cancelled" and (record.superseded or _group_cancelled(event.failed_jobs)):
        reason = "superseded"
    # Everything the reporter read from GitHub is remote text: cleaned before it leaves ghapp.
    failed_jobs = [reports.cleaned_job(job) for job in event.failed_jobs]
    verdict = Verdict(
        status="failure",
        reason=reason,
        summary=untrusted.clean(event.summary),
        failed_jobs=failed_jobs,
        # Superseded is decided here, after the reporter classified the run as cancelled.
        cause=reports.cleaned_cause(
            event.cause
            if event.cause is not None and reason != "superseded"
            else classify_jobs(default_rules(), reason, failed_jobs)
        ),
    )
    updated = _with_outputs(record.model_copy(deep=True), event.outputs, event.outputs_problem)
    return complete(updated, verdict, event.at)


def _group_cancelled(jobs: list[FailedJob]) -> bool:
    return any(GROUP_CANCEL_MARK in a.message.lower() for job in jobs for a in job.annotations)


def _on_report_deadline(record: DeploymentRecord, event: DeadlinesChecked) -> Transition:
    run = record.run
    if run is None or event.at < report_deadline(record, event.report_timeout):
        return Transition(record)
    limit = f"{event.report_timeout:g} s (REPORT_TIMEOUT)"
    if run.conclusion == "success":
        url = untrusted.clean(record.deployed_url_seen or "") or None
        where = (
            f" to {untrusted.code_span(url, 2000)}"
            if url
            else f"; its environment URL could not be read within {limit}"
        )
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
        verdict.cause = rules_of(event.rules).classify(
            Failure(reason=verdict.reason, log=verdict.summary)
        )
    return complete(record.model_copy(deep=True), verdict, event.at)


def on_deadlines(record: DeploymentRecord, event: DeadlinesChecked) -> Transition:
    """Give up on a run never found, running too long, or a report taking too long."""
    if record.phase in ("completed", "recorded"):
        # A recorded dispatch is its request's until the orphan sweep doubts it.
        return Transition(record)
    if record.phase == "concluding":
        return _on_report_deadline(record, event)
    waited = (event.at - record.dispatched_at).total_seconds()
    if record.run is None:
        lookup = min(event.run_lookup_timeout, record.lookup_seconds or event.run_lookup_timeout)
        if waited < lookup:
            return Transition(record)
        verdict = Verdict(status="failure", reason="run_not_found", summary=_lost(record, lookup))
        verdict.cause = rules_of(event.rules).classify(
            Failure(reason="run_not_found", log=verdict.summary)
        )
        return complete(record.model_copy(deep=True), verdict, event.at)
    # Time spent waiting for people does not count toward RUN_TIMEOUT.
    waited -= record.waited_seconds
    open_wait = record.progress.waiting if record.progress is not None else None
    if open_wait is not None:
        waited -= max((event.at - open_wait.since).total_seconds(), 0.0)
    if waited < event.run_timeout:
        return Transition(record)
    verdict = Verdict(
        status="failure",
        reason="timed_out",
        summary=f"Run {record.run.id} was still {record.run.status or 'running'} after "
        f"{event.run_timeout:g} s; ghapp stopped waiting for it.",
    )
    verdict.cause = rules_of(event.rules).classify(Failure(reason="timed_out", log=verdict.summary))
    run_id = record.run.id
    done = complete(record.model_copy(deep=True), verdict, event.at)
    # The run is cancelled with the verdict: a run ghapp gave up on must not deploy later.
    return Transition(done.record, [CancelRun(run_id), *done.actions], changed=True)


def _lost(record: DeploymentRecord, lookup: float) -> str:
    where = f"{record.workflow} on {record.repository}@{record.ref}"
    if record.dispatch_doubt is not None:
        # The cause rules read "may have started the run" as transient: deploying again is
        # the remedy, under a new Idempotency-Key.
        return (
            f"No run of {where} carrying its correlation id appeared within {lookup:g} s of "
            f"the dispatch: {record.dispatch_doubt}. None did; deploy again if still wanted."
        )
    detail = f" ({record.ambiguity})" if record.ambiguity else ""
    return f"No run of {where} could be identified within {lookup:g} s of the dispatch{detail}."


def conclude_action(record: DeploymentRecord, run: Run) -> Action:
    """What a completed run needs before its verdict: its URL or its failed jobs."""
    if run.conclusion == "success":
        return FindDeployedUrl(run_id=run.id, head_sha=record.head_sha)
    return GatherFailure(run_id=run.id, attempt=run.attempt, conclusion=run.conclusion or "")


def success_verdict(record: DeploymentRecord, url: str | None) -> Verdict:
    """The verdict of a successful run deployed to `url` (None: not known)."""
    # The environment URL is the workflow's to write: cleaned, and quoted in the summary.
    url = untrusted.clean(url or "") or None
    where = (
        f" to {untrusted.code_span(url, 2000)}" if url else "; the run reported no environment URL"
    )
    run_id = record.run.id if record.run else "?"
    return Verdict(
        status="success",
        summary=f"Deployed {record.repository}@{record.ref} (run {run_id}){where}.",
        deployed_url=url,
    )


def rejected_verdict(record: DeploymentRecord, message: str, rules: CauseRules | None) -> Verdict:
    """The failure verdict of a dispatch GitHub refused, with its cause."""
    verdict = Verdict(
        status="failure",
        reason="dispatch_rejected",
        summary=f"GitHub refused to dispatch {record.workflow} on {record.repository}@"
        f"{record.ref}: {untrusted.code_span(message, 500)}",
    )
    # The evidence is GitHub's own message, not ghapp's sentence around it.
    verdict.cause = reports.cleaned_cause(
        rules_of(rules).classify(Failure(reason="dispatch_rejected", log=message))
    )
    return verdict


def policy_verdict(
    record: DeploymentRecord, policy: str | None, reason: str, retry_after: datetime | None
) -> Verdict:
    """The failure verdict of a deploy a gate policy refused (at the request or at the gate)."""
    text = untrusted.clean(reason)[:500]
    return Verdict(
        status="failure",
        reason="policy_rejected",
        summary=f"Gate policy `{policy}` refused the deploy of {record.repository}@{record.ref} "
        f"to {record.environment}: {text}",
        cause=Cause(
            category="policy",
            retryable=False,
            rule=f"gate.{policy}",
            hint="Wait until the policy allows it (retry_after), or meet it (promote the commit "
            "first), or ask for an override.",
            evidence=text or None,
            retry_after=retry_after,
        ),
    )


def rules_of(rules: CauseRules | None) -> CauseRules:
    """The cause rules given, else the built-in ones."""
    return rules if rules is not None else default_rules()


def complete(
    record: DeploymentRecord, verdict: Verdict, now: datetime, *, hold: bool = True
) -> Transition:
    """Give the record its verdict and queue the callback, or hold it for a rollback."""
    if hold and _starts_rollback(record, verdict):
        # The callback waits until the rollback is started, so it can name it.
        record.held_verdict = verdict
        record.phase = "concluding"
        record.updated_at = now
        return Transition(
            record, [StartRollback(record.repository, record.environment)], changed=True
        )
    if record.outputs_wanted:
        verdict.outputs = dict(record.outputs_read or {})
        verdict.summary += outputs_core.missing_note(
            record.outputs_wanted,
            verdict.outputs,
            record.outputs_problem
            or ("not read before the verdict" if record.outputs_read is None else None),
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


def verdict_reason(conclusion: str | None) -> ReasonValue:
    """The verdict reason for a run conclusion that is not success."""
    value = conclusion or "failure"
    return value if value in _REASONS else "failure"  # type: ignore[return-value]
