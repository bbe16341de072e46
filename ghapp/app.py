"""The Starlette application: routes, and the background workers its lifespan runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from cachetools import LRUCache
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp import api, webhooks
from ghapp.callbacks import CallbackSender, RetryPolicy
from ghapp.config import Settings
from ghapp.deploys import DeploymentRecord
from ghapp.engine import Engine
from ghapp.github.client import GitHubClient
from ghapp.poller import Poller
from ghapp.store import SqlStore

log = logging.getLogger("ghapp.app")
# How often stranded work (a verdict half-gathered when a task died) is picked up again.
SWEEP_INTERVAL = 30.0


@dataclass
class Services:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    store: SqlStore
    session: aiohttp.ClientSession
    github: GitHubClient
    engine: Engine
    sender: CallbackSender
    poller: Poller
    idempotency_locks: LRUCache[str, asyncio.Lock] = field(
        default_factory=lambda: LRUCache(maxsize=10_000)
    )

    def notify_verdict(self, _record: DeploymentRecord) -> None:
        """A verdict was stored: wake the callback sender."""
        self.sender.wake()


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
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        try:
            await engine.resume()
        except Exception:
            log.exception("sweep failed")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store = SqlStore(settings.database_url)
    await store.open()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    github = GitHubClient(
        session,
        app_id=settings.app_id or "",
        private_key=settings.app_private_key(),
        api_url=settings.github_api_url,
        retry_base=app.state.retry_base,
    )
    sender = CallbackSender(
        store,
        session,
        secret=settings.callback_secret or "",
        policy=RetryPolicy(
            base=settings.callback_retry_base,
            max_interval=settings.callback_retry_max_interval,
            retry_for=settings.callback_retry_for,
        ),
    )
    engine = Engine(
        store, github, on_verdict=lambda _r: sender.wake(), action_retry_base=app.state.retry_base
    )
    poller = Poller(store, github, engine, settings)
    services = Services(settings, store, session, github, engine, sender, poller)
    app.state.services = services
    workers = [
        asyncio.create_task(sender.run()),
        asyncio.create_task(_sweep(engine)),
        # Reconciliation runs first inside the poller: every unfinished deployment, at once.
        asyncio.create_task(poller.run()),
    ]
    resumed = await engine.resume()
    log.info("ghapp ready", extra={"resumed": resumed, "database": store.url.split(":")[0]})
    try:
        yield
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await poller.close()
        await engine.close()
        await session.close()
        await store.close()


def create_app(settings: Settings, *, retry_base: float = 1.0) -> Starlette:
    """The ghapp ASGI application; `retry_base` scales every retry wait (tests shorten it)."""
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route(settings.webhook_path, webhooks.receive, methods=["POST"]),
        *api.routes,
    ]
    app = Starlette(routes=routes, lifespan=_lifespan)
    app.state.settings = settings
    app.state.retry_base = retry_base
    return app
