"""`GET /api/v1/deployments/{id}/events`: a deployment's changes as Server-Sent Events.

Every event is the whole Deployment resource (one JSON line): a snapshot first, then one event
per change of state, run or progress, and `completed` last. Ids grow with the stored record's
version, and past the client's `Last-Event-ID`, so they increase across reconnects too.

A plain ASGI response rather than sse-starlette: a stream here is one coroutine plus one task
watching for the client leaving (sse-starlette runs four, and ends its streams on a process-wide
flag, where ghapp must end one app's streams when that app shuts down: see `runner.Server`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ghapp.core.deploys import DeploymentRecord
from ghapp.core.scopes import ADMIN, Grant
from ghapp.web.authz import authenticate, bearer, check, unauthorized
from ghapp.web.http import DEPLOYMENT_ID, error
from ghapp.web.operator.sessions import SESSION_COOKIE, read_session_cookie, session_revoked

if TYPE_CHECKING:
    from ghapp.web.services import Services
    from ghapp.work.hub import ChangeHub

KEEPALIVE = 15.0
# What EventSource waits before reconnecting (its default is browser-dependent).
RETRY_MS = 2000
# Retry-After of the 503 that refuses a stream past MAX_STREAMS.
STREAMS_FULL_RETRY = 5


def classify(before: DeploymentRecord | None, after: DeploymentRecord) -> str | None:
    """The event a change is (`completed`, `state`, `progress`), or None if streams skip it."""
    if after.state == "completed":
        return "completed"
    if before is None or before.state != after.state or before.run != after.run:
        return "state"
    if before.progress != after.progress:
        return "progress"
    return None


def format_event(event_id: int, kind: str, record: DeploymentRecord) -> bytes:
    """One SSE event: id, event name and the resource as a single `data` line."""
    data = record.public().model_dump_json()
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode()


def _last_event_id(request: Request) -> int:
    value = request.headers.get("last-event-id", "").strip()
    # ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses.
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


async def _allowed(request: Request, services: Services) -> Grant | None:
    """The bearer token's grant, or a signed-in page session's (only admin tokens sign in)."""
    if bearer(request) is not None:
        return await authenticate(request)
    session = read_session_cookie(services.settings, request.cookies.get(SESSION_COOKIE))
    # A signed-out session's cookie no longer opens the stream either.
    if session is None or await session_revoked(services.store, session):
        return None
    return ADMIN


class EventStream(Response):
    """The stream of one deployment, from a subscription taken before its snapshot was read."""

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: ChangeHub,
        record: DeploymentRecord,
        subscription: contextlib.ExitStack,
        wake: asyncio.Event,
        last_event_id: int,
    ) -> None:
        # Not Response.__init__: it would add `content-length: 0`.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        self.hub = hub
        self.record = record
        self.subscription = subscription
        self.wake = wake
        self.last_id = last_event_id
        self.gone = False
        self.written_at = 0.0

    def _next_id(self, record: DeploymentRecord) -> int:
        self.last_id = max(record.version, self.last_id + 1)
        return self.last_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch_disconnect(receive))
        try:
            with self.subscription:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                await self._stream(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.wake.set()

    async def _body(self, send: Send, chunk: bytes) -> None:
        self.written_at = asyncio.get_running_loop().time()
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _stream(self, send: Send) -> None:
        sent = self.record
        first = "completed" if sent.state == "completed" else "state"
        await self._body(
            send, f"retry: {RETRY_MS}\n".encode() + format_event(self._next_id(sent), first, sent)
        )
        if first == "completed":
            return
        deployment_id = sent.id
        loop = asyncio.get_running_loop()
        while not (self.gone or self.hub.closed):
            # Counted from the last write: wake-ups that send nothing do not put it off.
            quiet = max(self.written_at + KEEPALIVE - loop.time(), 0.0)
            try:
                async with asyncio.timeout(quiet):
                    await self.wake.wait()
            except TimeoutError:
                await self._body(send, b": keep-alive\n\n")
                continue
            self.wake.clear()
            latest = self.hub.latest(deployment_id)
            if latest is None or latest.version <= sent.version:
                continue
            kind = classify(sent, latest)
            sent = latest
            if kind is not None:
                await self._body(send, format_event(self._next_id(latest), kind, latest))
            if kind == "completed":
                return


async def deployment_events(request: Request) -> Response:
    """GET /api/v1/deployments/{id}/events (bearer token, or the operator page's session)."""
    services: Services = request.app.state.services
    grant = await _allowed(request, services)
    if grant is None:
        return unauthorized()
    deployment_id = request.path_params["deployment_id"]
    if not DEPLOYMENT_ID.fullmatch(deployment_id):
        return error(404, "not_found", "no such deployment")
    hub = services.hub
    # Checked and taken with no await in between: two requests cannot both take the last one.
    if hub.streams >= services.settings.max_streams:
        return _streams_full(services.settings.max_streams)
    subscription = contextlib.ExitStack()
    # Subscribed before the snapshot is read: a change in between still wakes the stream.
    wake = subscription.enter_context(hub.subscribe(deployment_id))
    try:
        record = await services.store.get(deployment_id)
    except BaseException:
        subscription.close()
        raise
    if record is None:
        subscription.close()
        return error(404, "not_found", "no such deployment")
    refused = check(grant, request, repository=record.repository, environment=record.environment)
    if refused is not None:
        subscription.close()
        return refused
    hub.offer(record)
    return EventStream(hub, record, subscription, wake, _last_event_id(request))


def _streams_full(cap: int) -> Response:
    return error(
        503,
        "too_many_streams",
        f"this server has its maximum of {cap} event streams open (MAX_STREAMS); retry later",
        headers={"Retry-After": str(STREAMS_FULL_RETRY)},
    )


routes = [
    Route("/api/v1/deployments/{deployment_id}/events", deployment_events, methods=["GET"]),
]
