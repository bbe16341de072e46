"""Starting a deployment, shared by the deployments API, rollbacks and the engine's automatic
rollback: the Idempotency-Key, the write-ahead record under the concurrency rule, the
dispatch, and what its outcome does to the record (see ghapp.core.deploy_dispatch)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import IntegrityError

from ghapp.core import deploys, releases
from ghapp.core.deploy_dispatch import ORPHAN_AFTER, ORPHANED
from ghapp.core.deploys import (
    DeploymentRecord,
    DispatchDoubted,
    DispatchNotSent,
    Event,
    RollbackDecided,
    SendCallback,
    Superseded,
    Transition,
)
from ghapp.core.enums import DeploymentKind
from ghapp.core.models import DeploymentRequest
from ghapp.core.progress import median
from ghapp.core.times import utcnow
from ghapp.github.client import GitHubUnavailable
from ghapp.store import EnvironmentBusy, IdempotencyConflict
from ghapp.store.base import StoreUnavailable
from ghapp.work.dispatching import (
    GITHUB_BUDGET,
    DispatchServices,
    after_binding,
    await_answer,
    prepare_within,
    send_within,
)
from ghapp.work.workers import Backoff

if TYPE_CHECKING:
    from cachetools import LRUCache

log = logging.getLogger("ghapp.launch")


class LaunchServices(DispatchServices, Protocol):
    """What starting a deployment needs: the dispatch's services, the Idempotency-Key locks
    of this process, and the notice of a verdict (the web app's `Services` has them)."""

    idempotency_locks: LRUCache[str, asyncio.Lock]

    def notify_verdict(self, record: DeploymentRecord) -> None:
        """A verdict was stored: count it and wake the callback sender."""
# By this long after the request arrived the write-ahead record must be committed (the 5 s
# answer leaves room for a SQLite connection still finishing its busy wait), and at least
# MIN_WRITE after GitHub's lookups.
WRITE_BUDGET = 3.3
MIN_WRITE = 1.0
# Test-only: SIGKILL this process right after a write-ahead record is committed and before
# its dispatch request is sent (tests/test_write_ahead.py). Never set it in production.
KILL_AFTER_RECORD = "GHAPP_TEST_KILL_AFTER_RECORD"
# How long a dispatch outcome that could not be written is retried in the background
# (meanwhile the orphan sweep of any replica settles it too).
SETTLE_FOR = 600.0


@dataclass
class Plan:
    """A deployment to start: the request and what ghapp adds to it."""

    request: DeploymentRequest
    callback_url: str
    kind: DeploymentKind = "deploy"
    rollback_of: str | None = None
    # Event-loop time the request arrived: GitHub's share of the 5 s answer counts from it.
    started: float | None = None
    # The caller's W3C trace context (headers), when tracing is on.
    traceparent: str | None = None
    tracestate: str | None = None
    # The name of the token that asked (None: ghapp itself, an automatic rollback).
    requested_by: str | None = None


@dataclass
class Started:
    """The deployment the request made, or made before (`repeat`: an Idempotency-Key repeat)."""

    record: DeploymentRecord
    repeat: bool = False


class Conflict(Exception):
    """`reject`: an unfinished deployment of the environment exists; nothing was dispatched."""

    def __init__(self, message: str, deployment_id: str) -> None:
        super().__init__(message)
        self.deployment_id = deployment_id


class InProgress(Exception):
    """The first request with this Idempotency-Key is still being answered."""


class NoRelease(Exception):
    """A rollback has no earlier release to restore."""


def request_hash(*parts: str) -> str:
    """The hash an Idempotency-Key is bound to."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


# One request per environment at a time in this process enters the database's environment
# lock: a burst queues here, holding no pooled connection.
_turns: weakref.WeakValueDictionary[tuple[int, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


@contextlib.asynccontextmanager
async def _environment_turn(
    services: LaunchServices, record: DeploymentRecord
) -> AsyncIterator[None]:
    if record.concurrency == "queue":
        yield
        return
    key = (id(services), record.repository, record.environment)
    lock = _turns.get(key)
    if lock is None:
        lock = _turns[key] = asyncio.Lock()
    async with lock:
        yield


async def start(
    services: LaunchServices,
    key: str | None,
    body_hash: str,
    plan: Callable[[], Awaitable[Plan]],
) -> Started:
    """Start a deployment once per Idempotency-Key: a repeat is answered before any rule,
    `InProgress` while the first request with the key is still being answered."""
    if key is None:
        return Started(await _start(services, await plan(), None, body_hash))
    lock = services.idempotency_locks.get(key)
    if lock is None:
        lock = services.idempotency_locks[key] = asyncio.Lock()
    if lock.locked():
        raise InProgress(key)
    async with lock:
        existing = await _existing(services, key, body_hash)
        if existing is not None:
            return existing
        try:
            return Started(await _start(services, await plan(), key, body_hash))
        except IntegrityError:
            # Another replica recorded this key first.
            existing = await _existing(services, key, body_hash)
            if existing is None:
                raise
            return existing


async def _existing(services: LaunchServices, key: str, body_hash: str) -> Started | None:
    found = await services.store.by_idempotency_key(key)
    if found is None:
        return None
    record, stored_hash = found
    if stored_hash != body_hash:
        raise IdempotencyConflict(key)
    if record.phase == "recorded":
        if (utcnow() - record.created_at).total_seconds() < ORPHAN_AFTER:
            raise InProgress(key)
        # Its process is gone: GitHub may have its dispatch, which is never sent again.
        record = await adopt_orphan(services, record)
    return Started(record, repeat=True)


async def adopt_orphan(services: LaunchServices, record: DeploymentRecord) -> DeploymentRecord:
    """A `recorded` deployment whose process died: shown, and its run looked for."""
    transition = await services.engine.apply(record, DispatchDoubted(why=ORPHANED, at=utcnow()))
    current = transition.record if transition is not None else record
    log.warning("dispatch left unanswered by a stopped process; looking for its run",
                extra={"deployment_id": record.id})
    if current.phase != "completed" and current.run is None:
        services.poller.spawn(services.poller.check(current))
    elif current.phase == "completed":
        services.notify_verdict(current)
    return current


async def _start(
    services: LaunchServices, plan: Plan, key: str | None, body_hash: str
) -> DeploymentRecord:
    settings = services.settings
    loop = asyncio.get_running_loop()
    arrived = plan.started if plan.started is not None else loop.time()
    deployment_id = "dep_" + uuid.uuid4().hex[:24]
    body = plan.request
    now = utcnow()
    tracing = getattr(services, "tracing", None)
    trace = tracing.begin(plan.traceparent, plan.tracestate) if tracing is not None else None
    prepared = await prepare_within(services, body, deadline=arrived + GITHUB_BUDGET)
    write_by = max(arrived + WRITE_BUDGET, loop.time() + MIN_WRITE)
    if prepared.target is None:
        transition = deploys.rejected_deployment(
            deployment_id,
            body,
            ref=prepared.ref,
            callback_url=plan.callback_url,
            message=prepared.refused or "refused",
            now=now,
            default_environment=settings.default_environment,
            kind=plan.kind,
            rollback_of=plan.rollback_of,
            rules=settings.cause_rules(),
        )
        rejected = transition.record.model_copy(update={"requested_by": plan.requested_by})
        rejected.trace = trace
        async with _writing(write_by):
            record = await services.store.create(
                rejected, idempotency_key=key, request_hash=body_hash,
                enqueue_callback=True,
            )
        log.info("dispatch rejected", extra={"deployment_id": record.id,
                                             "error": prepared.refused})
        services.notify_verdict(record)
        return record
    target = prepared.target
    environment = deploys.environment_of(body, settings.default_environment)
    blocked = None
    # The gate's code loads only where a policies file is set.
    if settings.gate_policy_path is not None:
        from ghapp.work import gate

        blocked = await gate.blocked_at_request(
            settings, services.store, services.github, body.repository, environment, target,
            plan.kind, override=getattr(body, "override", None) is not None,
        )
    if blocked is not None:
        transition = deploys.policy_rejected_deployment(
            deployment_id, body, ref=target.ref, callback_url=plan.callback_url,
            policy=blocked.policy, reason=blocked.reason, retry_after=blocked.retry_after,
            now=now, default_environment=settings.default_environment, kind=plan.kind,
            rollback_of=plan.rollback_of,
        )
        async with _writing(write_by):
            record = await services.store.create(
                transition.record, idempotency_key=key, request_hash=body_hash,
                enqueue_callback=True,
            )
        log.info("deploy refused by a gate policy",
                 extra={"deployment_id": record.id, "policy": blocked.policy})
        services.notify_verdict(record)
        return record
    async with _writing(write_by):
        history = await services.store.recent_run_seconds(
            body.repository, body.workflow, environment
        )
    record = deploys.recorded_deployment(
        deployment_id,
        body,
        ref=target.ref,
        callback_url=plan.callback_url,
        installation_id=target.installation_id,
        correlation_id=deployment_id if target.correlate else None,
        now=now,
        default_environment=settings.default_environment,
        kind=plan.kind,
        rollback_of=plan.rollback_of,
        typical_run_seconds=median(history),
    ).model_copy(update={"requested_by": plan.requested_by})
    record.trace = trace
    superseding = Superseded(by=deployment_id, at=now)
    try:
        # The wait for this environment's turn counts too: while the database is away, a
        # queue of requests must not make the last one wait past its 5 s.
        async with _writing(write_by), _environment_turn(services, record):
            superseded = await services.store.record_dispatch(
                record,
                idempotency_key=key,
                request_hash=body_hash,
                rule=body.concurrency,
                supersede=lambda previous: deploys.apply(previous, superseding),
            )
    except EnvironmentBusy as exc:
        services.metrics.concurrency_rejected.inc()
        raise Conflict(
            f"{body.repository} has an unfinished deployment to {environment}",
            exc.deployment_id,
        ) from None
    _after_superseded(services, superseded)
    if os.environ.get(KILL_AFTER_RECORD):
        os.kill(os.getpid(), signal.SIGKILL)
    sending_since = time.time_ns()
    sent = await send_within(
        services, body, target, deployment_id, deadline=arrived + GITHUB_BUDGET,
        traceparent=trace.traceparent() if trace is not None else None,
    )
    if tracing is not None:
        tracing.dispatched(record, sending_since, time.time_ns())
    current = await _settle(services, record, sent.event)
    # The answer tells the dispatch as GitHub answered it (`dispatched`, its run if named),
    # even where the run's own webhooks have moved the stored deployment on meanwhile.
    answer = deploys.apply(record, sent.event).record
    if isinstance(sent.event, DispatchNotSent):
        raise GitHubUnavailable(sent.unavailable or "the dispatch request could not be sent")
    if plan.kind == "rollback":
        services.metrics.rollbacks.inc()
    log.info(
        "dispatched",
        extra={
            "deployment_id": current.id,
            "repository": current.repository,
            "run_id": current.run.id if current.run else None,
            "doubt": current.dispatch_doubt,
        },
    )
    if sent.pending is not None:
        # Recorded first, so a late acceptance is never dispatched twice.
        await_answer(services, current, sent)
    elif current.phase == "completed":
        services.notify_verdict(current)
    elif current.phase != "recorded":
        await after_binding(services, current)
    return answer if answer.phase != "recorded" else current


@contextlib.asynccontextmanager
async def _writing(deadline: float) -> AsyncIterator[None]:
    """The request's database work, bounded: past `deadline` the database is unavailable."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise StoreUnavailable("the database did not answer in time") from None


async def _settle(
    services: LaunchServices, record: DeploymentRecord, event: Event
) -> DeploymentRecord:
    """Apply the dispatch's outcome; if the database fails now, the deployment as it will be
    (the write is retried in the background, and the orphan sweep covers a crash)."""
    try:
        transition = await services.engine.apply(record, event)
    except Exception as exc:
        if not StoreUnavailable.covers(exc):
            raise
        log.warning("dispatch outcome not recorded yet; retrying in the background",
                    extra={"deployment_id": record.id, "error": str(exc)})
        # Even a drop: done before the orphan sweep, a retry with the key dispatches.
        services.poller.spawn(_settle_later(services, record.id, event))
        return deploys.apply(record, event).record
    return transition.record if transition is not None else record


async def _settle_later(services: LaunchServices, deployment_id: str, event: Event) -> None:
    backoff = Backoff()
    deadline = asyncio.get_running_loop().time() + SETTLE_FOR
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(backoff.failed())
        try:
            record = await services.store.get(deployment_id)
            if record is None:
                return
            transition = await services.engine.apply(record, event)
        except Exception as exc:
            if not StoreUnavailable.covers(exc):
                log.exception("dispatch outcome not recorded", extra={"deployment_id":
                                                                      deployment_id})
                return
            continue
        if transition is not None and transition.record.phase == "completed":
            services.notify_verdict(transition.record)
        elif transition is not None:
            await after_binding(services, transition.record)
        log.info("dispatch outcome recorded after all", extra={"deployment_id": deployment_id})
        return


def _after_superseded(services: LaunchServices, transitions: list[Transition]) -> None:
    """Deployments a cancel_previous superseded (committed with the new record)."""
    for transition in transitions:
        services.metrics.superseded.inc()
        record = transition.record
        if any(isinstance(action, SendCallback) for action in transition.actions):
            services.notify_verdict(record)
        services.engine.schedule(record, transition.actions)


async def rollback_plan(
    services: LaunchServices,
    repository: str,
    environment: str,
    to: str | None,
    *,
    callback_url: str,
    metadata: dict[str, str],
) -> Plan:
    """The rollback deployment that restores a release (or NoRelease)."""
    history = await services.store.releases(repository, environment)
    target = releases.rollback_target(history, to)
    if target is None:
        which = f"release {to}" if to else "release before the current one"
        raise NoRelease(f"{repository} has no earlier {which} in {environment}")
    version = releases.version_of(target)
    if version is None:
        raise NoRelease(f"release {target.id} has no known version or commit to deploy")
    request = DeploymentRequest(
        repository=repository,
        workflow=target.workflow,
        inputs={"environment": environment, "version": version},
        callback_url=callback_url,
        metadata=metadata,
    )
    return Plan(request, callback_url, kind="rollback", rollback_of=target.id)


async def start_automatic_rollback(
    services: LaunchServices, failed: DeploymentRecord
) -> RollbackDecided:
    """on_failure rollback: restore the environment's current release, once per failure."""
    history = await services.store.releases(failed.repository, failed.environment, limit=1)
    if not history:
        return RollbackDecided(deployment_id=None, to=None, at=utcnow())
    current = history[0]
    version = releases.version_of(current)
    if version is None:
        return RollbackDecided(deployment_id=None, to=None, at=utcnow())
    request = DeploymentRequest(
        repository=failed.repository,
        workflow=current.workflow,
        inputs={"environment": failed.environment, "version": version},
        callback_url=failed.callback.url,
        metadata=failed.metadata,
    )
    plan = Plan(
        request,
        failed.callback.url or services.settings.orchestrator_callback_url or "",
        kind="rollback",
        rollback_of=current.id,
    )

    async def planned() -> Plan:
        return plan

    # A fixed key: a retry after a crash or a lost answer never dispatches a second rollback.
    key = "rollback-after:" + failed.id
    started = await start(services, key, request_hash(key), planned)
    return RollbackDecided(deployment_id=started.record.id, to=current.id, at=utcnow())
