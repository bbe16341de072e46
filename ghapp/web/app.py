"""The Starlette application: routes, and the background workers its lifespan runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.config import MIN_SECRET, Settings
from ghapp.core.tracecontext import tracing_wanted
from ghapp.github.budget import RateBudget
from ghapp.github.client import GitHubClient
from ghapp.github.deliveries import AutoRedeliverer
from ghapp.github.sessions import LazySession
from ghapp.logsetup import register_secret
from ghapp.metrics import Metrics
from ghapp.store import SqlStore
from ghapp.store.base import StoreUnavailable
from ghapp.web import (
    access_api,
    api,
    check_api,
    deliveries_api,
    deploykey_api,
    events,
    gate_api,
    openapi,
    releases_api,
    webhooks,
)
from ghapp.web.operator import page as operator_page
from ghapp.web.services import Services
from ghapp.work import launch
from ghapp.work.callbacks import CallbackSender, RetryPolicy
from ghapp.work.delivery_log import DeliveryLog
from ghapp.work.engine import Engine
from ghapp.work.poller import Poller
from ghapp.work.retention import Retention
from ghapp.work.workers import Backoff

log = logging.getLogger("ghapp.app")
# How often stranded work (a verdict half-gathered when a task or a replica died) is looked
# for: with the gather lease's few seconds, a dead replica's reports move on within 10 s.
SWEEP_INTERVAL = 2.0


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics: Prometheus text; state counts are read from the database at scrape time."""
    services: Services = request.app.state.services
    metrics = services.metrics
    for state, count in (await services.store.count_by_state()).items():
        metrics.deployments.labels(state).set(count)
    metrics.outbox_depth.set(await services.store.outbox_depth())
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def _count_github_calls(
    metrics: Metrics,
) -> Callable[[str, int, Mapping[str, str], int | None], None]:
    def observe(
        url: str, status: int, headers: Mapping[str, str], installation: int | None
    ) -> None:
        metrics.github_call(url, status)
        remaining = headers.get("x-ratelimit-remaining")
        # The REST budget only: GraphQL's is counted apart (resource `graphql`).
        if headers.get("x-ratelimit-resource", "core") != "core":
            return
        if remaining is not None and remaining.isdigit():
            metrics.rate_limit_remaining.labels(str(installation or "app")).set(int(remaining))

    return observe


# What a client is told to wait before trying again while the database is away.
STORE_RETRY_AFTER = "5"


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """Any route: the database is away (down, cut off, locked) -> 503 + Retry-After, never a
    500; any other error stays a 500."""
    if not StoreUnavailable.covers(exc):
        log.error("request failed", exc_info=exc, extra={"path": request.url.path})
        return JSONResponse({"error": "internal", "message": "ghapp failed; see its log"}, 500)
    log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)})
    return JSONResponse(
        {"error": "store_unavailable", "message": "ghapp's database is unavailable; try again"},
        503,
        headers={"Retry-After": STORE_RETRY_AFTER},
    )


async def healthz(_request: Request) -> Response:
    """GET /healthz: the process is alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """GET /readyz: the database answers and the App key loads."""
    services: Services = request.app.state.services
    problems = {}
    try:
        await services.store.ping()
    except Exception as exc:
        problems["database"] = f"unreachable: {type(exc).__name__}"
    try:
        services.settings.require_for_serve()
    except Exception as exc:
        problems["settings"] = str(exc)
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, 503)
    return JSONResponse({"status": "ready"})


async def _sweep(engine: Engine) -> None:
    backoff = Backoff(first=SWEEP_INTERVAL, cap=10.0)
    wait = SWEEP_INTERVAL
    while True:
        await asyncio.sleep(wait)
        try:
            await engine.resume(stranded_only=True)
            backoff.ok()
            wait = SWEEP_INTERVAL
        except Exception as exc:
            wait = backoff.failed()
            if not StoreUnavailable.covers(exc):
                log.exception("sweep failed")


async def _automatic_rollback(services: Services, failed: Any) -> Any:
    """`on_failure: rollback`, started by ghapp itself: in the audit trail as `ghapp`'s."""
    decided = await launch.start_automatic_rollback(services, failed)
    if decided.deployment_id is not None:
        await services.auditor.record(
            actor="ghapp",
            action="rollback.create",
            target=decided.deployment_id,
            outcome="202",
            reason=f"on_failure: rollback after {failed.id} failed",
        )
    return decided


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Defence in depth: even a careless log line cannot print these.
    for secret in (
        *settings.webhook_secret,
        settings.callback_secret,
        settings.callback_secret_previous,
        settings.orchestrator_token,
        *settings.app_private_keys(),
    ):
        register_secret(secret)
    if weak := settings.weak_webhook_secrets():
        # Accepted: the secret is shared with GitHub and may be mid-rotation (README, Upgrading).
        log.warning(
            "WEBHOOK_SECRET: %d of its entries are shorter than %d characters: "
            "rotate to a longer one",
            weak,
            MIN_SECRET,
        )
    store = SqlStore(settings.database_url)
    await store.open()
    # Opened at the first request GitHub or an orchestrator is sent: an idle server never
    # loads aiohttp.
    session = LazySession(timeout=app.state.request_timeout)
    github = GitHubClient(
        session,
        app_id=settings.app_id or "",
        private_key=settings.app_private_key(),
        fallback_keys=settings.app_private_keys()[1:],
        api_url=settings.github_api_url,
        retry_base=app.state.retry_base,
    )
    sender = CallbackSender(
        store,
        session,
        secret=settings.callback_secret or "",
        previous=settings.callback_secret_previous,
        policy=RetryPolicy(
            base=settings.callback_retry_base,
            max_interval=settings.callback_retry_max_interval,
            retry_for=settings.callback_retry_for,
        ),
    )
    metrics = Metrics()
    github.observers.append(_count_github_calls(metrics))
    sender.metrics = metrics
    engine = Engine(
        store,
        github,
        on_verdict=lambda record: services.notify_verdict(record),
        action_retry_base=app.state.retry_base,
        report_timeout=settings.report_timeout,
        rules=settings.cause_rules(),
    )
    # Background polling pauses for an installation low on its API budget (headers of
    # every answer); nothing on the dispatch path asks it.
    budget = RateBudget()
    github.observers.append(budget.observe)
    poller = Poller(store, github, engine, settings, budget)
    poller.metrics = metrics
    services = Services(settings, store, session, github, engine, sender, poller, metrics)
    # Traces only when the OTEL_* variables ask (otherwise nothing of OpenTelemetry loads).
    if tracing_wanted(os.environ):  # else nothing of tracing (or OpenTelemetry) loads
        from ghapp.work import tracing

        services.tracing = sender.tracing = tracing.from_environment()
    # A run of a ghapp deployment seen `waiting` by a poll is decided by the gate (a missed
    # protection-rule webhook never leaves it waiting).
    poller.on_waiting = functools.partial(_decide_waiting, services)
    app.state.services = services
    engine.start_rollback = lambda record: _automatic_rollback(services, record)
    workers = [
        asyncio.create_task(sender.run()),
        asyncio.create_task(_sweep(engine)),
        # Reconciliation runs first inside the poller: every unfinished deployment, at once.
        asyncio.create_task(poller.run()),
    ]
    # The local delivery log, and redelivery of failed webhooks when AUTO_REDELIVER is on.
    delivery_log = DeliveryLog(store.engine, days=settings.delivery_log_days, begin=store.begin)
    services.delivery_log = delivery_log
    delivery_log.start()
    # Every table that grows with traffic is pruned (docs/retention.md).
    retention = Retention(
        store,
        delivery_log_days=settings.delivery_log_days,
        delivery_log=delivery_log,
        audit_days=settings.audit_days,
    )
    workers.append(asyncio.create_task(retention.run()))
    if settings.auto_redeliver:
        workers.append(asyncio.create_task(AutoRedeliverer(github).run()))
    resumed = await engine.resume()
    if app.state.freeze_gc:
        # What start-up loaded (modules, the libraries' tables) lives as long as the process:
        # out of the collector's sight, a full collection scans only what came since, in a few
        # ms instead of the 80 ms pauses measured under the ingest load.
        gc.collect()
        gc.freeze()
    log.info("ghapp ready", extra={"resumed": resumed, "database": store.url.split(":")[0]})
    try:
        yield
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await services.hub.close()
        await poller.close()
        await engine.close()
        await sender.close()
        if services.tracing is not None:
            await asyncio.to_thread(services.tracing.shutdown)
        await delivery_log.close()
        await session.close()
        await store.close()


async def _decide_waiting(services: Services, *args: Any, **kwargs: Any) -> Any:
    """The gate's decision on a run seen waiting (its code loads at the first such run)."""
    from ghapp.work import gate

    return await gate.decide_waiting(services, *args, **kwargs)


def create_app(
    settings: Settings,
    *,
    retry_base: float = 1.0,
    request_timeout: float = 30.0,
    freeze_gc: bool = False,
) -> Starlette:
    """The ghapp ASGI application; `retry_base` scales every retry wait (tests shorten it).

    `request_timeout` bounds every outgoing request, to GitHub or an orchestrator (tests
    shorten it to reach what follows a request that never answers without waiting 30 s).

    `freeze_gc` is for a process that serves only this app (`ghapp serve`): once started, the
    objects it holds are moved out of the garbage collector's sight (`gc.freeze`).
    """
    routes = [
        # First: routes are tried in order, and GitHub's stream is most of the traffic.
        Route(settings.webhook_path, webhooks.receive, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *api.routes,
        *releases_api.routes,
        *events.routes,
        *deploykey_api.routes, *deliveries_api.routes, *check_api.routes,
        *openapi.routes, *operator_page.routes, *gate_api.routes,
        *access_api.routes,
    ]
    # Not `Exception`: Starlette hands that to its outermost middleware, which answers and
    # raises again; these are answered where they happen.
    handlers: dict[Any, Any] = {
        kind: store_unavailable
        for kind in (StoreUnavailable, SQLAlchemyError, OSError, TimeoutError)
    }
    app = Starlette(routes=routes, lifespan=_lifespan, exception_handlers=handlers)
    app.state.settings = settings
    app.state.retry_base = retry_base
    app.state.request_timeout = request_timeout
    app.state.freeze_gc = freeze_gc
    return app


def app_from_env() -> Starlette:
    """The app for `uvicorn --factory ghapp.web.app:app_from_env` (settings from the env)."""
    from ghapp.config import load_settings
    from ghapp.logsetup import configure_logging

    settings = load_settings(for_serve=True)
    configure_logging(level=settings.log_level, fmt=settings.effective_log_format())
    return create_app(settings, freeze_gc=True)
