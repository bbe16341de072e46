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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import gidgethub
from pydantic_core import from_json

from ghapp.core.deploy_events import run_event
from ghapp.core.deploys import DeploymentRecord, DispatchAnswered, DispatchRefused, Event
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
# (storing the deployment, answering).
GITHUB_BUDGET = 4.0


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
class Sent:
    """What GitHub made of a dispatch within the budget: accepted (`dispatched`), refused
    (`refused`, GitHub's message, on `ref`), or sent with its answer still to come (`pending`)."""

    ref: str
    dispatched: Dispatched | None = None
    refused: str | None = None
    target: Target | None = None
    pending: asyncio.Task[Dispatched] | None = None


async def send_within(
    services: DispatchServices, body: DeploymentRequest, deployment_id: str, *, deadline: float
) -> Sent:
    """Dispatch by `deadline` (event-loop time); GitHubUnavailable (a sentence a person reads)
    when no dispatch can have reached GitHub by then."""
    clock = time.perf_counter()
    watch = inflight.DispatchWatch(traced=services.github.traced)
    token = inflight.current.set(watch)
    try:
        try:
            async with asyncio.timeout_at(deadline):
                target = await prepare(services.github, body.repository, body.ref)
        except TimeoutError:
            raise GitHubUnavailable(_late(services, watch)) from None
        except DispatchRejected as exc:
            return Sent(ref=body.ref or "(default branch)", refused=str(exc))
        except gidgethub.BadRequest as exc:
            return Sent(ref=body.ref or "(default branch)", refused=_said(exc))
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
            return Sent(ref=target.ref, refused=message)
        if not watch.in_flight:
            sending.cancel()
            if failure is not None and not isinstance(failure, GitHubUnavailable):
                raise failure
            raise GitHubUnavailable(str(failure) if failure is not None else _late(services, watch))
        log.warning(
            "dispatch answer late: recording it, waiting for the answer in the background",
            extra={"deployment_id": deployment_id, "repository": body.repository},
        )
        return Sent(ref=target.ref, target=target, pending=sending)
    services.metrics.dispatch_latency.observe(time.perf_counter() - clock)
    dispatched = sending.result()
    return Sent(ref=dispatched.ref, dispatched=dispatched)


def await_answer(services: DispatchServices, record: DeploymentRecord, sent: Sent) -> None:
    """A recorded dispatch whose answer is late: apply the answer when it comes."""
    assert sent.pending is not None
    services.poller.spawn(_await_answer(services, record, sent.pending))


async def _await_answer(
    services: DispatchServices, record: DeploymentRecord, sending: asyncio.Task[Dispatched]
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
        await after_binding(services, transition.record, late=True)


async def after_binding(
    services: DispatchServices, record: DeploymentRecord, *, late: bool = False
) -> None:
    """What a dispatch's answer leads to: its early webhooks, or a search for its run."""
    if record.run is not None:
        # Its webhooks may have come before it was stored (see webhook_handlers.early_run_fields).
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
