"""The synchronous dispatch behind `POST /api/v1/deployments`: an answer within 5 s.

Where no dispatch can have reached GitHub (connection refused, 5xx answers, lookups that did
not finish), the answer is `503` and nothing is recorded. Where a dispatch request was sent
and its answer is late, the deployment is recorded (`dispatched`, run unknown) and answered
`202`, and the answer is awaited in the background: the run, a refusal, or (no answer at all)
the run is found by listing, as for a dispatch that names no run."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import gidgethub
from pydantic_core import from_json
from starlette.responses import JSONResponse, Response

from ghapp.core import deploys
from ghapp.core.deploys import DeploymentRecord, DispatchAnswered, DispatchRefused, Event
from ghapp.core.models import DeploymentRequest
from ghapp.core.progress import median
from ghapp.github import inflight
from ghapp.github.client import GitHubUnavailable
from ghapp.github.dispatch import Dispatched, DispatchRejected, Target, prepare, send
from ghapp.work.engine import utcnow
from ghapp.work.poller import run_event

if TYPE_CHECKING:
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.api")
# Of the 5 s the orchestrator is promised, what GitHub may take; the rest is ghapp's own work
# (storing the deployment, answering).
GITHUB_BUDGET = 4.0
RETRY_AFTER = "30"


def _unavailable(message: str) -> Response:
    text = f"GitHub could not take the dispatch: {message}"
    return JSONResponse(
        {"error": "github_unavailable", "message": text},
        503,
        headers={"Retry-After": RETRY_AFTER},
    )


def _said(exc: gidgethub.HTTPException) -> str:
    return f"{str(exc) or exc.status_code.phrase} ({int(exc.status_code)})"


def _late(services: Services, watch: inflight.DispatchWatch) -> str:
    return watch.last_error or (
        f"GitHub API at {services.github.origin} did not answer within {GITHUB_BUDGET:g} s"
    )


async def dispatch_deployment(
    services: Services,
    body: DeploymentRequest,
    callback_url: str,
    key: str | None,
    request_hash: str,
    *,
    started: float,
) -> Response:
    """Dispatch and answer: 202 (dispatched, rejected, or answer late) or 503, by `started`
    (event-loop time the request arrived) plus GITHUB_BUDGET."""
    deployment_id = "dep_" + uuid.uuid4().hex[:24]
    # Taken before the dispatch: runs created after it are candidates when GitHub omits the id.
    now = utcnow()
    clock = time.perf_counter()
    deadline = started + GITHUB_BUDGET
    watch = inflight.DispatchWatch(traced=services.github.traced)
    token = inflight.current.set(watch)
    try:
        try:
            async with asyncio.timeout_at(deadline):
                target = await prepare(services.github, body.repository, body.ref)
        except TimeoutError:
            return _unavailable(_late(services, watch))
        except GitHubUnavailable as exc:
            return _unavailable(str(exc))
        except DispatchRejected as exc:
            return await _rejected(services, deployment_id, body, callback_url, key,
                                   request_hash, body.ref or "(default branch)", str(exc), now)
        except gidgethub.BadRequest as exc:
            return await _rejected(services, deployment_id, body, callback_url, key,
                                   request_hash, body.ref or "(default branch)", _said(exc), now)
        # A task of its own (it carries the watch): it may outlive this request.
        sending = asyncio.create_task(
            send(services.github, body.repository, body.workflow, target, body.inputs,
                 correlation_id=deployment_id)
        )
    finally:
        inflight.current.reset(token)
    await asyncio.wait({sending}, timeout=max(deadline - asyncio.get_running_loop().time(), 0))
    if not sending.done() or sending.exception() is not None:
        failure = None if not sending.done() else sending.exception()
        if isinstance(failure, DispatchRejected | gidgethub.BadRequest):
            message = _said(failure) if isinstance(failure, gidgethub.BadRequest) else str(failure)
            return await _rejected(services, deployment_id, body, callback_url, key,
                                   request_hash, target.ref, message, now)
        if not watch.in_flight:
            sending.cancel()
            if failure is not None and not isinstance(failure, GitHubUnavailable):
                raise failure
            return _unavailable(str(failure) if failure is not None else _late(services, watch))
        return await _pending(services, deployment_id, body, callback_url, key, request_hash,
                              target, sending, now)
    dispatched = sending.result()
    services.metrics.dispatch_latency.observe(time.perf_counter() - clock)
    typical = await _typical_run_seconds(services, body)
    record = deploys.new_deployment(
        deployment_id,
        body,
        ref=dispatched.ref,
        callback_url=callback_url,
        installation_id=dispatched.installation_id,
        run_id=dispatched.run_id,
        html_url=dispatched.html_url,
        now=now,
        correlation_id=dispatched.correlation_id,
        default_environment=services.settings.default_environment,
        typical_run_seconds=typical,
    )
    record = await services.store.create(record, idempotency_key=key, request_hash=request_hash)
    await _after_binding(services, record)
    log.info(
        "dispatched",
        extra={
            "deployment_id": record.id,
            "repository": record.repository,
            "run_id": dispatched.run_id,
        },
    )
    return JSONResponse(record.public().model_dump(mode="json"), 202)


async def _typical_run_seconds(services: Services, body: DeploymentRequest) -> float | None:
    """The median run time of recent successes like this one (for the progress estimate)."""
    environment = deploys.environment_of(body, services.settings.default_environment)
    history = await services.store.recent_run_seconds(body.repository, body.workflow, environment)
    return median(history)


async def _rejected(
    services: Services,
    deployment_id: str,
    body: DeploymentRequest,
    callback_url: str,
    key: str | None,
    request_hash: str,
    ref: str,
    message: str,
    now: datetime,
) -> Response:
    transition = deploys.rejected_deployment(
        deployment_id,
        body,
        ref=ref,
        callback_url=callback_url,
        message=message,
        now=now,
        default_environment=services.settings.default_environment,
        rules=services.settings.cause_rules(),
    )
    record = await services.store.create(
        transition.record, idempotency_key=key, request_hash=request_hash, enqueue_callback=True
    )
    services.notify_verdict(record)
    log.info("dispatch rejected", extra={"deployment_id": record.id, "error": message})
    return JSONResponse(record.public().model_dump(mode="json"), 202)


async def _pending(
    services: Services,
    deployment_id: str,
    body: DeploymentRequest,
    callback_url: str,
    key: str | None,
    request_hash: str,
    target: Target,
    sending: asyncio.Task[Dispatched],
    now: datetime,
) -> Response:
    """The dispatch may have started a run: record it now, learn the rest when GitHub says."""
    typical = await _typical_run_seconds(services, body)
    record = deploys.new_deployment(
        deployment_id,
        body,
        ref=target.ref,
        callback_url=callback_url,
        installation_id=target.installation_id,
        run_id=None,
        html_url=None,
        now=now,
        default_environment=services.settings.default_environment,
        typical_run_seconds=typical,
    )
    record = await services.store.create(record, idempotency_key=key, request_hash=request_hash)
    services.poller.spawn(_await_answer(services, record, sending))
    log.warning(
        "dispatch answer late: recorded, waiting for it in the background",
        extra={"deployment_id": record.id, "repository": record.repository},
    )
    return JSONResponse(record.public().model_dump(mode="json"), 202)


async def _await_answer(
    services: Services, record: DeploymentRecord, sending: asyncio.Task[Dispatched]
) -> None:
    event: Event
    try:
        dispatched = await sending
    except DispatchRejected as exc:
        event = DispatchRefused(
            message=str(exc), at=utcnow(), rules=services.settings.cause_rules()
        )
    except Exception as exc:
        # No answer ever came: the run, if there is one, is found by listing.
        log.warning(
            "dispatch answer never came; looking for its run",
            extra={"deployment_id": record.id, "error": str(exc) or exc.__class__.__name__},
        )
        services.poller.search_soon(record.repository)
        return
    else:
        event = DispatchAnswered(
            run_id=dispatched.run_id,
            html_url=dispatched.html_url,
            correlation_id=dispatched.correlation_id,
            at=utcnow(),
        )
    fresh = await services.store.get(record.id)
    if fresh is None:
        return
    transition = await services.engine.apply(fresh, event)
    log.info(
        "late dispatch answer applied",
        extra={"deployment_id": record.id, "run_id": getattr(event, "run_id", None)},
    )
    if transition is not None and transition.record.phase != "completed":
        await _after_binding(services, transition.record, late=True)


async def _after_binding(
    services: Services, record: DeploymentRecord, *, late: bool = False
) -> None:
    """What a dispatch's answer leads to: its early webhooks, or a search for its run."""
    if record.run is not None:
        # Its webhooks may have come before it was stored (see webhooks.early_run_fields).
        early = await services.store.early_run(record.run.id)
        if early is not None:
            # The answer still says `dispatched` (DESIGN.md); the stored state moves on.
            await services.engine.apply(record, run_event(from_json(early), utcnow()))
    elif record.correlation_id is None:
        # GitHub named no run and nothing in its title will: find it by listing, soon.
        services.poller.search_soon(record.repository)
    elif late:
        # A late answer naming the correlation id: the run's webhooks, title and all, may
        # have come before it, so look for the run now rather than at the next poll.
        services.poller.spawn(services.poller.check(record))
