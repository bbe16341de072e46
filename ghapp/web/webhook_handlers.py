"""What each webhook event does once its delivery is verified and parsed: the answers and the
handler of each event ghapp acts on."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from starlette.responses import JSONResponse

from ghapp.core import correlation
from ghapp.core.deploy_events import run_event
from ghapp.core.deploys import DeploymentRecord, EnvironmentObserved
from ghapp.core.progress import JobObserved, job_of
from ghapp.core.times import github_time, utcnow
from ghapp.web.webhook_payloads import is_run_id

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.webhooks")


def early_run_fields(run: dict[str, Any]) -> dict[str, Any]:
    """What a run event needs of a workflow_run payload, to keep for a deployment not stored yet."""
    keys = (
        "id",
        "run_attempt",
        "status",
        "conclusion",
        "html_url",
        "head_sha",
        "run_started_at",
        "updated_at",
    )
    return {key: run.get(key) for key in keys}


EARLY_RUN_WINDOW = timedelta(seconds=60)


def just_created(created: Any) -> bool:
    """Whether a run's `created_at` is within EARLY_RUN_WINDOW of now."""
    when = github_time(created)
    return when is not None and utcnow() - when < EARLY_RUN_WINDOW


class Answer(JSONResponse):
    """A webhook answer that remembers its outcome, for metrics and the delivery log."""

    def __init__(self, status: int, outcome: str, **extra: Any) -> None:
        super().__init__({"outcome": outcome, **extra}, status)
        self.outcome = outcome
        self.event: str | None = None
        self.action: str | None = None

    def render(self, content: Any) -> bytes:
        """The JSON body; a bare `{"outcome": ...}` (most answers) is encoded once per outcome."""
        if len(content) == 1:
            outcome = content["outcome"]
            body = _BARE_BODIES.get(outcome)
            if body is None:
                body = _BARE_BODIES[outcome] = super().render(content)
            return body
        return super().render(content)


# Keyed by ghapp's own outcome names (a closed set).
_BARE_BODIES: dict[str, bytes] = {}




async def _ping(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    log.info("ping received", extra={"delivery_id": delivery_id, "hook_id": payload.get("hook_id")})
    return Answer(200, "pong", zen=payload.get("zen"))


def _remember_installation(services: Services, payload: dict[str, Any]) -> None:
    installation = payload.get("installation") or {}
    repository = (payload.get("repository") or {}).get("full_name")
    if installation.get("id") and repository:
        services.github.remember_installation(repository, int(installation["id"]))


async def _workflow_run(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    run = payload.get("workflow_run") or {}
    if run.get("event") != "workflow_dispatch" or not is_run_id(run.get("id")):
        return Answer(200, "not_ours")
    record = await services.store.by_run(run["id"])
    if record is None:
        repository = (payload.get("repository") or {}).get("full_name")
        # A dispatch whose run GitHub did not name (GHES): this may be it.
        if repository and await services.poller.on_unknown_run(run, repository):
            return Answer(200, "run_identified")
        # Or a run so fast that its webhook beat the storing of its deployment: note it, and
        # look again, so that whichever of the two comes second applies it. Only a run
        # created moments ago can be in that race.
        if not just_created(run.get("created_at")):
            return Answer(200, "not_ours")
        await services.store.note_early_run(run["id"], to_json(early_run_fields(run)).decode())
        record = await services.store.by_run(run["id"])
        if record is None:
            # Kept for when the dispatch's answer names it: `early` when a deployment of the
            # repository still waits for that answer, so the delivery log says it was ghapp's.
            waiting = await services.store.unbound(repository) if repository else []
            ours = correlation.awaited(run, map(correlation.Wanted.of, waiting))
            return Answer(200, "early" if ours else "not_ours")
    return await workflow_run_of(services, payload, delivery_id, record)


async def workflow_run_of(
    services: Services, payload: dict[str, Any], delivery_id: str, record: DeploymentRecord
) -> Answer:
    """A workflow_run delivery about the run `record` watches."""
    run = payload["workflow_run"]
    _remember_installation(services, payload)
    if delivery_id in services.recent_deliveries:
        return Answer(200, "duplicate")
    event = run_event({**run, "status": run.get("status") or payload.get("action") or ""}, utcnow())
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return Answer(200, "duplicate")
    # Info when the deployment moved; a delivery that changed nothing (GitHub repeats a run's
    # state several times) is a debug line, and the delivery log has it anyway.
    moved = transition.changed and not transition.liveness_only
    log.log(
        logging.INFO if moved else logging.DEBUG,
        "workflow_run %s handled",
        payload.get("action"),
        extra={
            "delivery_id": delivery_id,
            "deployment_id": record.id,
            "run_id": run["id"],
            "repository": record.repository,
            "state": transition.record.state,
        },
    )
    return Answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _followed_run(
    services: Services, run: dict[str, Any], delivery_id: str
) -> DeploymentRecord | Answer:
    """The deployment of a run ghapp follows, or the answer for a run it does not (or for a
    delivery it already had)."""
    if not is_run_id(run.get("id")):
        return Answer(200, "not_ours")
    record = await services.store.by_run(run["id"])
    if record is None:
        return Answer(200, "not_ours")
    if delivery_id in services.recent_deliveries:
        return Answer(200, "duplicate")
    return record


async def _deployment_status(
    services: Services, payload: dict[str, Any], delivery_id: str
) -> Answer:
    run = payload.get("workflow_run") or {}
    status = payload.get("deployment_status") or {}
    record = await _followed_run(services, run, delivery_id)
    if isinstance(record, Answer):
        return record
    event = EnvironmentObserved(
        run_id=run["id"],
        state=str(status.get("state") or ""),
        environment_url=status.get("environment_url") or None,
        at=utcnow(),
    )
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return Answer(200, "duplicate")
    return Answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _workflow_job(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    job = payload.get("workflow_job")
    if not isinstance(job, dict) or not is_run_id(job.get("run_id")):
        return Answer(200, "not_ours")
    record = await services.store.by_run(job["run_id"])
    if record is None:
        return Answer(200, "not_ours")
    return await workflow_job_of(services, payload, delivery_id, record)


async def workflow_job_of(
    services: Services, payload: dict[str, Any], delivery_id: str, record: DeploymentRecord
) -> Answer:
    """A workflow_job delivery about a job of the run `record` watches."""
    job = payload.get("workflow_job")
    parsed = job_of(job) if isinstance(job, dict) else None
    attempt = job.get("run_attempt", 1) if isinstance(job, dict) else None
    if parsed is None or not isinstance(attempt, int) or isinstance(attempt, bool):
        return Answer(400, "bad_request", message="workflow_job has fields of impossible types")
    _remember_installation(services, payload)
    if delivery_id in services.recent_deliveries:
        return Answer(200, "duplicate")
    assert isinstance(job, dict)
    event = JobObserved(run_id=job["run_id"], attempt=attempt, jobs=(parsed,), at=utcnow())
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return Answer(200, "duplicate")
    return Answer(200, "handled", deployment_id=record.id, state=transition.record.state)


async def _noted(services: Services, payload: dict[str, Any], delivery_id: str) -> Answer:
    _remember_installation(services, payload)
    return Answer(200, "noted")


async def _deployment_protection_rule(
    services: Services, payload: dict[str, Any], delivery_id: str
) -> Answer:
    from ghapp.core.gate import request_of
    from ghapp.work import gate

    if payload.get("action") != "requested":
        return Answer(200, "ignored")
    request = request_of(payload)
    if request is None:
        return Answer(400, "bad_request", message="no environment, repository or callback URL")
    _remember_installation(services, payload)
    if delivery_id in services.recent_deliveries:
        return Answer(200, "duplicate")
    services.recent_deliveries[delivery_id] = True
    try:
        decided = await gate.answer(services, request)
    except gate.GateDeferred as exc:
        del services.recent_deliveries[delivery_id]  # a redelivery is to be handled again
        return Answer(503, "gate_deferred", message=f"{exc}; deliver again later")
    if decided is None:
        return Answer(200, "duplicate")
    return Answer(
        200, "gate_" + decided["decision"], decision_id=decided["id"], origin=decided["origin"]
    )


async def _deployment_review(
    services: Services, payload: dict[str, Any], delivery_id: str
) -> Answer:
    from ghapp.core.deploy_events import ReviewDecided, ReviewRequested
    from ghapp.work.gate import reviewer_name

    run = payload.get("workflow_run") or {}
    record = await _followed_run(services, run, delivery_id)
    if isinstance(record, Answer):
        return record
    action = payload.get("action")
    environment = payload.get("environment")
    if not isinstance(environment, str):
        job_runs = payload.get("workflow_job_runs") or [payload.get("workflow_job_run") or {}]
        first = job_runs[0] if job_runs and isinstance(job_runs[0], dict) else {}
        environment = str(first.get("environment") or record.environment)
    event: ReviewRequested | ReviewDecided
    if action == "requested":
        reviewers = tuple(
            name for name in map(reviewer_name, payload.get("reviewers") or []) if name
        )
        since = github_time(payload.get("since")) or utcnow()
        event = ReviewRequested(run["id"], environment, reviewers, since)
    elif action in ("approved", "rejected"):
        approver = (payload.get("approver") or payload.get("sender") or {}).get("login")
        comment = payload.get("comment")
        event = ReviewDecided(
            run["id"], environment, str(action), str(approver or "a reviewer"),
            comment if isinstance(comment, str) else "", utcnow(),
        )
    else:
        return Answer(200, "ignored")
    transition = await services.engine.apply(record, event, delivery_id=delivery_id)
    services.recent_deliveries[delivery_id] = True
    if transition is None:
        return Answer(200, "duplicate")
    return Answer(200, "handled", deployment_id=record.id, state=transition.record.state)


HANDLERS = {
    "ping": _ping,
    "workflow_run": _workflow_run,
    "deployment_status": _deployment_status,
    "workflow_job": _workflow_job,
    "deployment_protection_rule": _deployment_protection_rule,
    "deployment_review": _deployment_review,
    "installation": _noted,
    "installation_repositories": _noted,
}
