"""The synchronous dispatch behind `POST /api/v1/deployments`: an answer within 5 s.

The lookups (`prepare_within`) come before the deployment is recorded; the dispatch request
(`send_within`) after. What the request did is told to the state machine as one event
(see ghapp.core.deploy_dispatch for what each leads to): GitHub's answer (`DispatchAnswered`,
`DispatchRefused`), a request that never left (`DispatchNotSent`: the record is dropped and
the orchestrator gets `503`), or one that may have reached GitHub without a usable answer
(`DispatchDoubted`: a 5xx, a broken connection, an answer still to come, which is then
awaited in the background)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import gidgethub
from pydantic_core import from_json

from ghapp.core.deploy_events import run_event
from ghapp.core.deploys import (
    DeploymentRecord,
    DispatchAnswered,
    DispatchDoubted,
    DispatchNotSent,
    DispatchRefused,
    Event,
)
from ghapp.core.models import DeploymentRequest
from ghapp.core.times import utcnow
from ghapp.github import inflight
from ghapp.github.client import GitHubUnavailable
from ghapp.github.dispatch import Dispatched, DispatchRejected, Target, prepare, send

if TYPE_CHECKING:
    from ghapp.config import Settings
    from ghapp.github.client import GitHubClient
    from ghapp.metrics import Metrics
    from ghapp.store import SqlStore
    from ghapp.work.engine import Engine
    from ghapp.work.poller import Poller

log = logging.getLogger("ghapp.api")
# Of the 5 s the orchestrator is promised, what GitHub may take; the rest is ghapp's own work
# (recording the deployment, answering).
GITHUB_BUDGET = 4.0
# A 5xx answer to the dispatch: how long its run is looked for before `run_not_found`.
DOUBTED_5XX_LOOKUP = 60.0
MAYBE = "so it may have started the run"


class DispatchServices(Protocol):
    """What the dispatch needs of the process's services (the web app's `Services` has it)."""

    settings: Settings
    store: SqlStore
    github: GitHubClient
    engine: Engine
    poller: Poller
    metrics: Metrics


def _said(exc: gidgethub.HTTPException) -> str:
    return f"{str(exc) or exc.status_code.phrase} ({int(exc.status_code)})"


def _late(services: DispatchServices, watch: inflight.DispatchWatch) -> str:
    return watch.last_error or (
        f"GitHub API at {services.github.origin} did not answer within {GITHUB_BUDGET:g} s"
    )


@dataclass
class Prepared:
    """The lookups before a dispatch: where it goes (`target`), or GitHub's refusal of it
    (`refused`, its message, on `ref`)."""

    ref: str
    target: Target | None = None
    refused: str | None = None


async def prepare_within(
    services: DispatchServices, body: DeploymentRequest, *, deadline: float
) -> Prepared:
    """The lookups by `deadline` (event-loop time); GitHubUnavailable (a sentence a person
    reads) when they did not finish. Nothing is dispatched."""
    watch = inflight.DispatchWatch(traced=services.github.traced)
    token = inflight.current.set(watch)
    try:
        async with asyncio.timeout_at(deadline):
            target = await prepare(
                services.github, body.repository, body.ref, body.workflow,
                traced=getattr(services, "tracing", None) is not None,
            )
    except TimeoutError:
        raise GitHubUnavailable(_late(services, watch)) from None
    except DispatchRejected as exc:
        return Prepared(ref=body.ref or "(default branch)", refused=str(exc))
    except gidgethub.BadRequest as exc:
        return Prepared(ref=body.ref or "(default branch)", refused=_said(exc))
    finally:
        inflight.current.reset(token)
    return Prepared(ref=target.ref, target=target)


@dataclass
class Sent:
    """What the dispatch request came to by the deadline: the event for the state machine;
    `unavailable`, the 503's sentence when it never left; `pending`, an answer still to come."""

    event: Event
    unavailable: str | None = None
    pending: asyncio.Task[Dispatched] | None = None
    watch: inflight.DispatchWatch | None = None


async def send_within(
    services: DispatchServices,
    body: DeploymentRequest,
    target: Target,
    deployment_id: str,
    *,
    deadline: float,
    traceparent: str | None = None,
) -> Sent:
    """Send the dispatch of a recorded deployment and tell what came of it by `deadline`."""
    clock = time.perf_counter()
    watch = inflight.DispatchWatch(traced=services.github.traced)
    token = inflight.current.set(watch)
    try:
        # A task of its own (it carries the watch): it may outlive this request.
        sending = asyncio.create_task(
            send(services.github, body.repository, body.workflow, target, body.inputs,
                 correlation_id=deployment_id, traceparent=traceparent)
        )
    finally:
        inflight.current.reset(token)
    await asyncio.wait({sending}, timeout=max(deadline - asyncio.get_running_loop().time(), 0))
    if not sending.done():
        if not watch.in_flight:
            # Still connecting (or waiting to retry a connection): it never left.
            sending.cancel()
            return Sent(DispatchNotSent(at=utcnow()), unavailable=_late(services, watch))
        log.warning(
            "dispatch answer late: recording it, waiting for the answer in the background",
            extra={"deployment_id": deployment_id, "repository": body.repository},
        )
        why = f"GitHub's answer to the dispatch did not come within {GITHUB_BUDGET:g} s, {MAYBE}"
        return Sent(DispatchDoubted(why=why, at=utcnow()), pending=sending, watch=watch)
    services.metrics.dispatch_latency.observe(time.perf_counter() - clock)
    return Sent(answer_event(services, watch, sending))


def answer_event(
    services: DispatchServices, watch: inflight.DispatchWatch, sending: asyncio.Task[Dispatched]
) -> Event:
    """The event a finished dispatch request tells (see `Sent`)."""
    failure = sending.exception()
    if failure is None:
        dispatched = sending.result()
        return DispatchAnswered(
            run_id=dispatched.run_id,
            html_url=dispatched.html_url,
            correlation_id=dispatched.correlation_id,
            at=utcnow(),
        )
    if isinstance(failure, DispatchRejected | gidgethub.BadRequest):
        message = _said(failure) if isinstance(failure, gidgethub.BadRequest) else str(failure)
        return DispatchRefused(message=message, at=utcnow(), rules=services.settings.cause_rules())
    if watch.status is not None and watch.status >= 500:
        return DispatchDoubted(
            why=f"GitHub answered {watch.status} to the dispatch, {MAYBE}",
            at=utcnow(),
            lookup_seconds=DOUBTED_5XX_LOOKUP,
        )
    if watch.maybe_sent:
        said = watch.last_error or str(failure) or type(failure).__name__
        return DispatchDoubted(
            why=f"the dispatch was sent and its answer never came ({said}), {MAYBE}",
            at=utcnow(),
        )
    if not isinstance(failure, GitHubUnavailable):
        raise failure
    return DispatchNotSent(at=utcnow())


def await_answer(services: DispatchServices, record: DeploymentRecord, sent: Sent) -> None:
    """A recorded dispatch whose answer is late: apply the answer when it comes."""
    assert sent.pending is not None and sent.watch is not None
    services.poller.spawn(_await_answer(services, record, sent.pending, sent.watch))


async def _await_answer(
    services: DispatchServices,
    record: DeploymentRecord,
    sending: asyncio.Task[Dispatched],
    watch: inflight.DispatchWatch,
) -> None:
    await asyncio.wait({sending})
    try:
        event = answer_event(services, watch, sending)
    except Exception as exc:
        event = DispatchNotSent(at=utcnow())
        log.warning("dispatch failed", extra={"deployment_id": record.id, "error": str(exc)})
    if isinstance(event, DispatchNotSent):
        # It was in flight when the request was answered: GitHub may have it all the same.
        event = DispatchDoubted(
            why=f"the dispatch answer never came ({watch.last_error or 'no answer'}), {MAYBE}",
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
        await after_binding(services, transition.record, late=True)


async def after_binding(
    services: DispatchServices, record: DeploymentRecord, *, late: bool = False
) -> None:
    """What a dispatch's answer leads to: its early webhooks, or a search for its run."""
    if record.run is not None:
        # Its webhooks may have come before it was stored (see webhook_handlers.early_run_fields).
        early = await services.store.early_run(record.run.id)
        if early is not None:
            # The answer still says `dispatched`; the stored state moves on.
            await services.engine.apply(record, run_event(from_json(early), utcnow()))
    elif record.correlation_id is None:
        # GitHub named no run and nothing in its title will: find it by listing, soon.
        services.poller.search_soon(record.repository)
    elif late or record.dispatch_doubt is not None:
        # The run's webhooks, title and all, may have come before the answer (or instead
        # of it): look for the run now rather than at the next poll.
        services.poller.spawn(services.poller.check(record))
