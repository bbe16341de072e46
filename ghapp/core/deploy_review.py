"""People in the loop: a run held for required reviewers shows who is awaited
(`progress.waiting`), and a reviewer's rejection is the verdict `review_rejected`."""

from __future__ import annotations

from ghapp.core import untrusted
from ghapp.core.deploy_events import (
    Action,
    ReviewDecided,
    ReviewRequested,
    SendWaiting,
    Transition,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploy_verdict import complete
from ghapp.core.models import Cause, Progress, Verdict, Waiting


def _ours(record: DeploymentRecord, run_id: int) -> bool:
    return record.phase != "completed" and record.run is not None and record.run.id == run_id


def on_review_requested(record: DeploymentRecord, event: ReviewRequested) -> Transition:
    """The run waits for reviewers: `progress.waiting` names them and since when."""
    if not _ours(record, event.run_id):
        return Transition(record)
    waiting = Waiting(
        kind="review",
        environment=event.environment,
        reviewers=list(event.reviewers),
        since=event.since,
    )
    if record.progress is not None and record.progress.waiting == waiting:
        return Transition(record)
    updated = record.model_copy(deep=True)
    progress = updated.progress or Progress()
    updated.progress = progress.model_copy(update={"waiting": waiting})
    updated.updated_at = max(updated.updated_at, event.since)
    actions: list[Action] = []
    if "deployment.waiting" in updated.notify and not updated.waiting_notified:
        updated.waiting_notified = True
        actions.append(SendWaiting())
    return Transition(updated, actions, changed=True)


def review_verdict(record: DeploymentRecord, reviewer: str, comment: str) -> Verdict:
    """The failure verdict of a deployment a reviewer rejected (the comment quoted)."""
    who = untrusted.code_span(reviewer, 100)
    said = untrusted.code_span(comment, 500) if comment else "no comment"
    return Verdict(
        status="failure",
        reason="review_rejected",
        summary=f"{who} rejected the deployment of {record.repository}@{record.ref} to "
        f"{record.environment}: {said}",
        cause=Cause(
            category="policy",
            retryable=False,
            rule="review.rejected",
            hint="A required reviewer rejected it: settle their concern before deploying again.",
            evidence=untrusted.clean(comment)[:500] or None,
        ),
    )


def on_review_decided(record: DeploymentRecord, event: ReviewDecided) -> Transition:
    """An approval ends the wait; a rejection ends the deployment (`review_rejected`)."""
    if not _ours(record, event.run_id):
        return Transition(record)
    updated = record.model_copy(deep=True)
    if event.state == "rejected":
        return complete(updated, review_verdict(updated, event.reviewer, event.comment), event.at)
    if updated.progress is None or updated.progress.waiting is None:
        return Transition(record)
    waited = (event.at - updated.progress.waiting.since).total_seconds()
    updated.waited_seconds += max(waited, 0.0)
    updated.progress = updated.progress.model_copy(update={"waiting": None})
    updated.updated_at = max(updated.updated_at, event.at)
    return Transition(updated, changed=True)
