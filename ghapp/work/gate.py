"""The gate at work: answering GitHub's `deployment_protection_rule` requests, recording and
counting each decision, and evaluating the policies with the data they need (I/O at the edges;
the decisions themselves are `ghapp.core.gate`'s)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import gidgethub

from ghapp.core import gate as core
from ghapp.core.deploy_events import GateRejected, ReviewRequested
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.gate_policies import PolicyVerdict, evaluate
from ghapp.core.times import github_time, utcnow
from ghapp.github import gate_calls
from ghapp.github.client import GitHubUnavailable
from ghapp.store.gate import public_decision

if TYPE_CHECKING:
    from ghapp.config import Settings
    from ghapp.github.client import GitHubClient
    from ghapp.github.dispatch import Target
    from ghapp.metrics import Metrics
    from ghapp.store import SqlStore
    from ghapp.work.access import Auditor
    from ghapp.work.callbacks import CallbackSender
    from ghapp.work.engine import Engine


class Services(Protocol):
    """What the gate needs of the web app's `Services`."""

    settings: Settings
    store: SqlStore
    github: GitHubClient
    metrics: Metrics
    sender: CallbackSender
    engine: Engine
    gate_state: dict[str, Any]
    auditor: Auditor

log = logging.getLogger("ghapp.gate")
# How long a request about an unknown run waits for a dispatch still without its answer.
DISPATCH_WAIT = 10.0
_LOOK_EVERY = 0.05


class GateDeferred(Exception):
    """A protection-rule request that cannot be decided now (GitHub did not answer)."""


def _iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


async def bot_login(services: Services) -> str:
    """The App's bot login (`SLUG[bot]`), asked of GitHub once per process."""
    cached = services.gate_state.get("bot")
    if cached is None:
        cached = services.gate_state["bot"] = f"{await gate_calls.app_slug(services.github)}[bot]"
    return str(cached)


async def promoted(
    settings: Settings,
    store: SqlStore,
    repository: str,
    environment: str,
    sha: str | None,
    kind: str,
    now: datetime,
) -> dict[str, datetime | None]:
    """For each promotion policy of `environment`: the sha's last success in its source."""
    found: dict[str, datetime | None] = {}
    for policy in settings.gate_policies().promotions(environment, kind):
        source = policy.promote_after
        assert source is not None
        if source in found:
            continue
        window = policy.window or timedelta(days=3650)
        found[source] = (
            await store.last_success_of_sha(
                repository, source, sha, since=(now - window).timestamp()
            )
            if sha
            else None
        )
    return found


async def policy_verdict(
    settings: Settings,
    store: SqlStore,
    *,
    repository: str,
    environment: str,
    sha: str | None,
    kind: str = "deploy",
    override: bool = False,
    now: datetime | None = None,
) -> PolicyVerdict:
    """What the policies say about deploying `sha` to `environment` now."""
    now = now or utcnow()
    policies = settings.gate_policies()
    if not policies.items:
        return PolicyVerdict(True)
    sources: Mapping[str, datetime | None] = await promoted(
        settings, store, repository, environment, sha, kind, now
    )
    return evaluate(
        policies, environment=environment, now=now, kind=kind, override=override,
        promoted=sources,
    )


async def blocked_at_request(
    settings: Settings,
    store: SqlStore,
    github: GitHubClient,
    repository: str,
    environment: str,
    target: Target,
    kind: str,
    *,
    override: bool = False,
) -> PolicyVerdict | None:
    """The policy that refuses a deploy request now, or None (the request's ref resolved to
    its commit only when a promotion policy needs it; an override passes freezes)."""
    policies = settings.gate_policies()
    if not policies.items:
        return None
    sha = None
    if policies.promotions(environment, kind):
        sha = await gate_calls.commit_sha(github, repository, target.installation_id, target.ref)
    verdict = await policy_verdict(
        settings, store, repository=repository, environment=environment, sha=sha, kind=kind,
        override=override,
    )
    return None if verdict.allowed else verdict


async def _find_record(
    services: Services, request: core.GateRequest, facts: core.RunFacts | None
) -> DeploymentRecord | None:
    """The ghapp deployment of the run: by run id, else by the correlation id in its title; a
    dispatch of the repository still without its answer is waited for (DISPATCH_WAIT)."""
    deadline = time.monotonic() + DISPATCH_WAIT
    while True:
        record = await services.store.by_run(request.run_id)
        if record is not None:
            return record
        waiting = await services.store.unbound(request.repository)
        if facts is not None and facts.title:
            for candidate in waiting:
                if candidate.correlation_id and candidate.correlation_id in facts.title:
                    return candidate
        if not any(r.phase in ("recorded", "dispatched") for r in waiting):
            # Its answer may have bound the run between the two reads: one look more.
            return await services.store.by_run(request.run_id)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_LOOK_EVERY)


async def _facts(
    services: Services, request: core.GateRequest, installation_id: int
) -> tuple[core.RunFacts | None, dict[str, Any]]:
    try:
        run = await services.github.run(request.repository, installation_id, request.run_id)
    except (gidgethub.GitHubException, GitHubUnavailable) as exc:
        log.warning("gate: the run could not be read", extra={"error": str(exc)})
        return None, {}
    return core.RunFacts.of(run), run


async def decide_waiting(
    services: Services, record: DeploymentRecord, run: Mapping[str, Any], installation: int
) -> None:
    """A poll or reconciliation saw a run of a ghapp deployment `waiting`: decide it as if the
    protection-rule webhook had come (its URL is known from the run id). GitHub refuses an
    answer when no rule of ghapp's is pending (the run waits for reviewers): then nothing is
    kept."""
    if record.run is None:
        return
    await _awaited_people(services, record, installation)
    if services.settings.gate != "on":
        return
    api = services.settings.github_api_url.rstrip("/")
    request = core.GateRequest(
        repository=record.repository,
        environment=record.environment,
        run_id=record.run.id,
        callback_url=f"{api}/repos/{record.repository}/actions/runs/{record.run.id}"
        "/deployment_protection_rule",
        sha=run.get("head_sha") if isinstance(run.get("head_sha"), str) else None,
        ref=run.get("head_branch") if isinstance(run.get("head_branch"), str) else None,
        installation_id=installation,
    )
    try:
        await answer(services, request, poll=True)
    except Exception as exc:
        log.warning("gate: could not decide a waiting run",
                    extra={"deployment_id": record.id, "error": str(exc)})


def reviewer_name(entry: Any) -> str | None:
    """A reviewer as GitHub lists it: a login, or a team as `org/slug`."""
    who = entry.get("reviewer") if isinstance(entry, dict) else None
    if not isinstance(who, dict):
        return None
    if entry.get("type") == "Team":
        org = str(who.get("html_url") or "").split("/orgs/")[-1].split("/")[0]
        return f"{org}/{who.get('slug')}" if org else str(who.get("slug"))
    login = who.get("login")
    return login if isinstance(login, str) else None


async def _awaited_people(
    services: Services, record: DeploymentRecord, installation: int
) -> None:
    """`progress.waiting` from the run's `pending_deployments` (a lost `deployment_review`
    webhook never hides who is awaited)."""
    assert record.run is not None
    try:
        pending = await gate_calls.pending_deployments(
            services.github, record.repository, installation, record.run.id
        )
    except (gidgethub.GitHubException, GitHubUnavailable) as exc:
        log.warning("gate: pending deployments unread",
                    extra={"deployment_id": record.id, "error": str(exc)})
        return
    for item in pending:
        reviewers = tuple(name for name in map(reviewer_name, item.get("reviewers") or []) if name)
        if not reviewers:
            continue
        environment = str((item.get("environment") or {}).get("name") or record.environment)
        since = github_time(item.get("wait_timer_started_at")) or utcnow()
        if record.progress is not None and record.progress.waiting is not None:
            since = record.progress.waiting.since  # the webhook's time, when it came
        await services.engine.apply(
            record, ReviewRequested(record.run.id, environment, reviewers, since)
        )
        return


async def answer(
    services: Services, request: core.GateRequest, *, poll: bool = False
) -> dict[str, Any] | None:
    """Decide one protection-rule request, record it, and answer GitHub; None when another
    process (or an earlier delivery) decided this run attempt and environment already."""
    settings = services.settings
    installation_id = request.installation_id or await services.github.installation_for(
        request.repository
    )
    facts, run = await _facts(services, request, installation_id)
    if facts is None and settings.gate == "on":
        # Whose run it is cannot be told: nothing is decided (a ghapp deploy must not be
        # rejected for GitHub's hiccup); the delivery fails, and a redelivery or a poll decides.
        raise GateDeferred("the run could not be read from GitHub")
    attempt = facts.attempt if facts is not None else 1
    if await services.store.gate_decision_of(request.run_id, attempt, request.environment):
        return None
    record = await _find_record(services, request, facts)
    whose = (
        core.whose_run(record, facts, await bot_login(services))
        if settings.gate == "on"
        else core.Whose("foreign" if record is None else "ghapp", "the gate is off")
    )
    policy = PolicyVerdict(True)
    if settings.gate == "on" and whose.origin == "ghapp" and record is not None:
        override = record.override_reason is not None
        policy = await policy_verdict(
            settings, services.store, repository=request.repository,
            environment=request.environment, sha=request.sha or record.head_sha,
            kind=record.kind, override=override,
        )
    verdict = core.decide(
        gate=settings.gate, foreign=settings.gate_foreign, whose=whose, record=record,
        policy=policy,
    )
    if settings.gate == "off":
        log.warning("gate is off: approving a protection-rule request unchecked",
                     extra={"repository": request.repository, "run_id": request.run_id})
    actor = facts.triggering_actor if facts is not None else request.sender
    doc: dict[str, Any] = {
        "id": "gate_" + uuid.uuid4().hex[:24],
        "repository": request.repository,
        "environment": request.environment,
        "run": {"id": request.run_id, "attempt": attempt, "html_url": run.get("html_url")},
        "sha": request.sha,
        "ref": request.ref,
        "actor": actor,
        "origin": verdict.origin,
        "decision": verdict.decision,
        "reason": verdict.reason,
        "comment": verdict.comment,
        "policy": verdict.policy,
        "retry_after": _iso(verdict.retry_after),
        "decided_at": _iso(utcnow()),
        "deployment_id": verdict.deployment_id,
        "installation_id": installation_id,
    }
    callback = settings.orchestrator_callback_url if verdict.origin == "foreign" else None
    stored = await services.store.record_gate_decision(doc, callback_url=callback)
    if stored is None:
        return None
    if verdict.state is not None:
        try:
            await send(services, doc, verdict.state, verdict.comment)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) != 422:
                raise
            if poll:
                await services.store.forget_gate_decision(doc["id"])  # nothing of ours pending
                return None
            # The run ended meanwhile (a reviewer rejected it, someone cancelled it): the
            # decision stays recorded, unanswered.
            log.warning("gate: GitHub had no pending rule to answer",
                        extra={"repository": request.repository, "run_id": request.run_id})
    services.metrics.gate_decisions.labels(verdict.origin, verdict.decision).inc()
    # After GitHub has its answer: the audit row never delays the run (its write is bounded).
    await services.auditor.record(
        actor="ghapp",
        action="gate.decide",
        target=f"{request.repository} run {request.run_id} ({request.environment})",
        outcome=verdict.decision,
        reason=verdict.reason,
    )
    if callback is not None:
        services.sender.wake()
    if verdict.origin == "ghapp" and verdict.decision == "rejected" and record is not None:
        event = GateRejected(
            at=utcnow(), policy=verdict.policy, reason=verdict.reason,
            retry_after=verdict.retry_after,
        )
        await services.engine.apply(record, event)  # its verdict's callback is queued there
    log.info(
        "gate decided",
        extra={"repository": request.repository, "run_id": request.run_id,
               "origin": verdict.origin, "decision": verdict.decision,
               "deployment_id": verdict.deployment_id},
    )
    return doc


async def send(services: Services, doc: dict[str, Any], state: str, comment: str) -> None:
    """POST the answer to GitHub and note it was accepted."""
    body = core.callback_body(doc["environment"], state, comment)
    await gate_calls.review_protection_rule(
        services.github, doc["repository"], int(doc["installation_id"]), doc["run"]["id"], body
    )
    await services.store.gate_answered(doc["id"])


async def settle(
    services: Services, decision_id: str, decision: str, who: str = "an operator"
) -> dict[str, Any] | None:
    """Approve or reject a held decision (the API, `ghapp gate approve|reject`); None when it
    is not held."""
    reason = f"{decision} by {who}"
    doc = await services.store.settle_gate_decision(decision_id, decision, reason=reason)
    if doc is None:
        return None
    services.metrics.gate_decisions.labels(doc["origin"], decision).inc()
    await send(services, doc, decision, f"ghapp: {reason}")
    return public_decision(doc)
