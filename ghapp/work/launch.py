"""Starting a deployment, shared by the deployments API, rollbacks and the engine's automatic
rollback: the Idempotency-Key, the concurrency rule, the dispatch and the record."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import gidgethub
from cachetools import LRUCache
from sqlalchemy.exc import IntegrityError

from ghapp.core import deploys, releases
from ghapp.core.deploys import DeploymentRecord, RollbackDecided, Superseded
from ghapp.core.enums import DeploymentKind
from ghapp.core.models import DeploymentRequest
from ghapp.core.progress import median
from ghapp.core.times import utcnow
from ghapp.store import IdempotencyConflict
from ghapp.store.aio import AsyncConnection
from ghapp.work.dispatching import (
    GITHUB_BUDGET,
    DispatchServices,
    after_binding,
    await_answer,
    send_within,
)

log = logging.getLogger("ghapp.launch")


class LaunchServices(DispatchServices, Protocol):
    """What starting a deployment needs: the dispatch's services, the Idempotency-Key locks
    of this process, and the notice of a verdict (the web app's `Services` has them)."""

    idempotency_locks: LRUCache[str, asyncio.Lock]

    def notify_verdict(self, record: DeploymentRecord) -> None:
        """A verdict was stored: count it and wake the callback sender."""


@dataclass
class Plan:
    """A deployment to start: the request and what ghapp adds to it."""

    request: DeploymentRequest
    callback_url: str
    kind: DeploymentKind = "deploy"
    rollback_of: str | None = None
    # Event-loop time the request arrived: GitHub's share of the 5 s answer counts from it.
    started: float | None = None


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


class NoRelease(Exception):
    """A rollback has no earlier release to restore."""


def request_hash(*parts: str) -> str:
    """The hash an Idempotency-Key is bound to."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


async def start(
    services: LaunchServices,
    key: str | None,
    body_hash: str,
    plan: Callable[[], Awaitable[Plan]],
) -> Started:
    """Start a deployment once per Idempotency-Key: a repeat is answered before any rule."""
    if key is None:
        return Started(await _start(services, await plan(), None, body_hash))
    # One start per key in this process; the unique constraint covers other replicas.
    lock = services.idempotency_locks.get(key)
    if lock is None:
        lock = services.idempotency_locks[key] = asyncio.Lock()
    async with lock:
        existing = await services.store.by_idempotency_key(key)
        if existing is not None:
            if existing[1] != body_hash:
                raise IdempotencyConflict(key)
            return Started(existing[0], repeat=True)
        try:
            return Started(await _start(services, await plan(), key, body_hash))
        except IntegrityError:
            # Another replica stored this key first (inside an environment's lock).
            existing = await services.store.by_idempotency_key(key)
            if existing is None:
                raise
            if existing[1] != body_hash:
                raise IdempotencyConflict(key) from None
            return Started(existing[0], repeat=True)


async def _start(
    services: LaunchServices, plan: Plan, key: str | None, body_hash: str
) -> DeploymentRecord:
    deployment_id = "dep_" + uuid.uuid4().hex[:24]
    rule = plan.request.concurrency
    if rule == "queue":
        stored = await _dispatch(services, plan, deployment_id, key, body_hash, None)
        return await _after_stored(services, stored)
    environment = deploys.environment_of(plan.request, services.settings.default_environment)
    repository = plan.request.repository
    if rule == "cancel_previous":
        await supersede(services, repository, environment, by=deployment_id)
    async with services.store.environment_guard(repository, environment) as conn:
        if rule == "reject":
            unfinished = await services.store.unfinished_in(repository, environment, conn)
            if unfinished:
                services.metrics.concurrency_rejected.inc()
                raise Conflict(
                    f"{repository} has an unfinished deployment to {environment}", unfinished[-1]
                )
        stored = await _dispatch(services, plan, deployment_id, key, body_hash, conn)
    return await _after_stored(services, stored)


async def supersede(
    services: LaunchServices, repository: str, environment: str, *, by: str
) -> None:
    """cancel_previous: the environment's unfinished deployments end as `superseded`."""
    for deployment_id in await services.store.unfinished_in(repository, environment):
        record = await services.store.get(deployment_id)
        if record is None:
            continue
        transition = await services.engine.apply(record, Superseded(by=by, at=utcnow()))
        current = transition.record if transition is not None else record
        if current.state == "completed" or current.run is None:
            continue
        try:
            installation = current.installation_id or await services.github.installation_for(
                repository
            )
            await services.github.cancel_run(repository, installation, current.run.id)
        except gidgethub.BadRequest as exc:
            # 409: the run ended meanwhile; its own verdict stands.
            log.info("superseded run not cancelled", extra={"deployment_id": deployment_id,
                                                             "error": str(exc)})
        services.metrics.superseded.inc()


async def _dispatch(
    services: LaunchServices,
    plan: Plan,
    deployment_id: str,
    key: str | None,
    body_hash: str,
    conn: AsyncConnection | None,
) -> tuple[DeploymentRecord, bool]:
    """Dispatch and store; with whether the answer bound the record (see after_binding)."""
    body = plan.request
    settings = services.settings
    # Taken before the dispatch: runs created after it are candidates when GitHub omits the id.
    now = utcnow()
    arrived = plan.started if plan.started is not None else asyncio.get_running_loop().time()
    sent = await send_within(services, body, deployment_id, deadline=arrived + GITHUB_BUDGET)
    if sent.refused is not None:
        transition = deploys.rejected_deployment(
            deployment_id,
            body,
            ref=sent.ref,
            callback_url=plan.callback_url,
            message=sent.refused,
            now=now,
            default_environment=settings.default_environment,
            kind=plan.kind,
            rollback_of=plan.rollback_of,
            rules=settings.cause_rules(),
        )
        record = await _store(services, transition.record, key, body_hash, conn, callback=True)
        log.info("dispatch rejected", extra={"deployment_id": record.id, "error": sent.refused})
        return record, False
    environment = deploys.environment_of(body, settings.default_environment)
    history = await services.store.recent_run_seconds(body.repository, body.workflow, environment)
    dispatched = sent.dispatched
    record = deploys.new_deployment(
        deployment_id,
        body,
        ref=sent.ref,
        callback_url=plan.callback_url,
        installation_id=(
            dispatched.installation_id
            if dispatched
            else sent.target.installation_id if sent.target else None
        ),
        run_id=dispatched.run_id if dispatched else None,
        html_url=dispatched.html_url if dispatched else None,
        now=now,
        correlation_id=dispatched.correlation_id if dispatched else None,
        default_environment=settings.default_environment,
        kind=plan.kind,
        rollback_of=plan.rollback_of,
        typical_run_seconds=median(history),
    )
    if plan.kind == "rollback":
        services.metrics.rollbacks.inc()
    log.info(
        "dispatched",
        extra={
            "deployment_id": record.id,
            "repository": record.repository,
            "run_id": record.run.id if record.run else None,
        },
    )
    record = await _store(services, record, key, body_hash, conn, callback=False)
    if sent.pending is not None:
        # Recorded first, so a late acceptance is never dispatched twice.
        await_answer(services, record, sent)
        return record, False
    return record, True


async def _store(
    services: LaunchServices,
    record: DeploymentRecord,
    key: str | None,
    body_hash: str,
    conn: AsyncConnection | None,
    *,
    callback: bool,
) -> DeploymentRecord:
    if conn is None:
        return await services.store.create(
            record, idempotency_key=key, request_hash=body_hash, enqueue_callback=callback
        )
    await services.store.insert(
        conn, record, idempotency_key=key, request_hash=body_hash, enqueue_callback=callback
    )
    return record


async def _after_stored(
    services: LaunchServices, stored: tuple[DeploymentRecord, bool]
) -> DeploymentRecord:
    record, answered = stored
    # Committed by now: the callback sender, woken, finds the verdict.
    if record.state == "completed":
        services.notify_verdict(record)
    elif answered:
        await after_binding(services, record)
    return record


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
