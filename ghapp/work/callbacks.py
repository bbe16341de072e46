"""The callback outbox worker: signed verdicts to the orchestrator, retried until delivered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ghapp.core.signatures import callback_headers
from ghapp.github.retry import backoff
from ghapp.github.sessions import LazySession
from ghapp.metrics import Metrics
from ghapp.store import OutboxItem, SqlStore
from ghapp.store.base import StoreUnavailable
from ghapp.work.workers import Backoff, Worker

if TYPE_CHECKING:
    import aiohttp

    from ghapp.work.tracing import Tracing

log = logging.getLogger("ghapp.callbacks")
CALLBACK_TIMEOUT = 10.0
EVENT = "deployment.completed"
GATE_FOREIGN = "gate.foreign"
# A claimed callback's lease: renewed every third of it while the POST is out, so a replica
# that dies frees its callbacks within this; short of it, the POST is abandoned first, so
# two replicas never send the same callback at once.
CALLBACK_LEASE = 6.0
# Callbacks claimed (and sent side by side) at once: a backlog after an outage moves in
# few claims.
CLAIM_BATCH = 50
# Stop sending this long before a lease no renewal could extend runs out.
LEASE_MARGIN = 1.0


def request_headers(
    secrets: list[str], event: str, delivery_id: str, body: bytes
) -> dict[str, str]:
    """The headers of a request to the orchestrator: its event, delivery id, and signatures
    (X-Ghapp-Signature-256 and the Standard Webhooks headers, signed with this attempt's time
    so that a receiver can refuse a replay). Every callback is signed here, the ping included."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "ghapp",
        "X-Ghapp-Event": event,
        **callback_headers(body, delivery_id, int(time.time()), secrets),
    }


class LeaseLost(Exception):
    """The callback's lease could not be renewed in time: another replica may take it."""


@dataclass(frozen=True)
class RetryPolicy:
    """CALLBACK_RETRY_BASE, _MAX_INTERVAL and _FOR (docs/reference/callbacks.md)."""

    base: float = 2.0
    max_interval: float = 600.0
    retry_for: float = 86400.0

    def next_attempt(self, attempts: int, first_queued: float, now: float) -> float | None:
        """When to try again after `attempts` failures, or None once the budget is spent."""
        if now - first_queued >= self.retry_for:
            return None
        return now + backoff(attempts, base=self.base, cap=self.max_interval)


class CallbackSender(Worker):
    """Claims due callbacks from the outbox and posts them; one loop per process."""

    def __init__(
        self,
        store: SqlStore,
        session: aiohttp.ClientSession | LazySession,
        *,
        secret: str,
        previous: str | None = None,
        policy: RetryPolicy,
        lease_seconds: float = CALLBACK_LEASE,
    ) -> None:
        super().__init__(store, "cb")
        # A LazySession opens (and loads aiohttp) with the first callback sent.
        self._session = session
        self.secret = secret
        # CALLBACK_SECRET_PREVIOUS during a rotation: each callback carries both signatures.
        self.secrets = [secret] if not previous else [secret, previous]
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.metrics = Metrics()
        self._wake = asyncio.Event()
        # OpenTelemetry (the app sets it when tracing is on): one span per attempt.
        self.tracing: Tracing | None = None
        # Delivered, but the database was away when it was to be recorded: recorded once it
        # is back, never sent again by this process meanwhile.
        self._unrecorded: dict[str, tuple[OutboxItem, int]] = {}

    def wake(self) -> None:
        """A verdict was just stored: look at the outbox now instead of at the next tick."""
        self._wake.set()

    async def run(self, idle_wait: float = 1.0) -> None:
        """Deliver forever; cancel the task to stop."""
        backoff = Backoff(first=idle_wait / 4)
        while True:
            self._wake.clear()
            try:
                await self._record_unrecorded()
                items = await self.store.claim_callbacks(
                    owner=self.owner, lease_seconds=self.lease_seconds, limit=CLAIM_BATCH
                )
                if items:
                    await asyncio.gather(*(self.deliver(item) for item in items))
                    backoff.ok()
                    continue
                due = await self.store.next_callback_due()
                if backoff.ok():
                    log.info("callback outbox resumed: the database answers again")
            except Exception as exc:
                # The database away: back off, and resume by itself when it is back.
                pause = backoff.failed()
                if not StoreUnavailable.covers(exc):
                    log.exception("callback outbox pass failed")
                elif backoff.failures == 1:
                    log.warning("callback outbox paused: the database is unavailable (%s)", exc)
                await asyncio.sleep(pause)
                due = None
            wait = idle_wait if due is None else min(max(due - time.time(), 0.01), idle_wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _record_unrecorded(self) -> None:
        for delivery_id, (item, status) in list(self._unrecorded.items()):
            await self.store.finish_callback(
                item, owner=self.owner, state="delivered", status=status
            )
            del self._unrecorded[delivery_id]

    async def deliver(self, item: OutboxItem) -> bool:
        """Post one callback attempt and record its outcome; True when delivered."""
        if item.delivery_id in self._unrecorded:
            # Sent already: only its recording was missing.
            _, sent_status = self._unrecorded.pop(item.delivery_id)
            await self.store.finish_callback(
                item, owner=self.owner, state="delivered", status=sent_status
            )
            return True
        # A `gate.foreign` callback is about a run no deployment has: its body is all it needs.
        standalone = item.event == GATE_FOREIGN and item.body is not None
        record = None if standalone else await self.store.get(item.deployment_id)
        if (record is None and not standalone) or item.url is None:
            await self.store.finish_callback(
                item, owner=self.owner, state="failed", error="no deployment or no callback URL"
            )
            return False
        if item.body is not None:
            # Queued with the change it announces: a start is sent as it was, even if the
            # verdict has come since.
            body = item.body.encode()
        else:
            assert record is not None
            public = record.public()
            public.callback.attempts = item.attempts + 1
            public.callback.state = "pending"
            body = public.model_dump_json().encode()
        headers = request_headers(self.secrets, item.event, item.delivery_id, body)
        if record is not None and record.trace is not None:
            # The deployment's root span: the orchestrator's handling joins its trace.
            headers["traceparent"] = record.trace.traceparent()
            if record.trace.tracestate:
                headers["tracestate"] = record.trace.tracestate
        from aiohttp import ClientError

        status: int | None = None
        error: str | None = None
        if item.lease_until - time.time() < LEASE_MARGIN:
            return False  # claimed too long ago (a stalled loop): leave it to the next claim
        attempt_since = time.time_ns()
        try:
            status = await self._post_holding_lease(item, body, headers)
        except (ClientError, TimeoutError) as exc:
            error = repr(exc)
        except LeaseLost:
            # Not ours any more: whoever holds it now sends it (with the same delivery id).
            log.warning(
                "callback lease lost mid-send",
                extra={"deployment_id": item.deployment_id, "delivery_id": item.delivery_id},
            )
            return False
        if self.tracing is not None and record is not None:
            self.tracing.callback_attempt(
                record, item.event, attempt_since, time.time_ns(), status, error
            )
        extra = {
            "deployment_id": item.deployment_id,
            "delivery_id": item.delivery_id,
            "event": item.event,
        }
        if status is not None and 200 <= status < 300:
            self.metrics.callback_attempts.labels("delivered").inc()
            seen = record.run_completed_seen_at if record is not None else None
            if seen is not None and item.attempts == 0 and item.event == EVENT:
                self.metrics.verdict_latency.observe(
                    max((datetime.now(UTC) - seen).total_seconds(), 0.0)
                )
            try:
                await self.store.finish_callback(
                    item, owner=self.owner, state="delivered", status=status
                )
            except Exception as exc:
                if not StoreUnavailable.covers(exc):
                    raise
                self._unrecorded[item.delivery_id] = (item, status)
                log.warning("callback delivered, recorded once the database is back",
                            extra={**extra, "status": status})
                return True
            log.info("callback delivered", extra={**extra, "status": status})
            return True
        error = error or f"answered {status}"
        retry_at = self.policy.next_attempt(item.attempts + 1, item.created_at, time.time())
        state = "pending" if retry_at is not None else "failed"
        self.metrics.callback_attempts.labels("failed").inc()
        if retry_at is None:
            self.metrics.callback_failures.inc()
        await self.store.finish_callback(
            item,
            owner=self.owner,
            state=state,
            next_attempt_at=retry_at,
            status=status,
            error=error,
        )
        log.warning(
            "callback attempt failed" if retry_at else "callback given up",
            extra={**extra, "error": error, "attempt": item.attempts + 1},
        )
        return False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (opened now if it was lazy)."""
        if isinstance(self._session, LazySession):
            return self._session.get()
        return self._session

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import aiohttp

        from ghapp import keepalive

        # Sent once more if the orchestrator closed the idle connection before any of it left.
        async with keepalive.request(
            self.session,
            "POST",
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
            allow_redirects=False,
        ) as response:
            await response.read()
            return response.status

    async def _post_holding_lease(
        self, item: OutboxItem, body: bytes, headers: dict[str, str]
    ) -> int:
        """POST while renewing the lease; abandon the POST before an unrenewed lease ends."""
        assert item.url is not None
        post = asyncio.ensure_future(self._post(item.url, body, headers))
        held_until = item.lease_until
        try:
            while True:
                beat = min(self.lease_seconds / 3, held_until - LEASE_MARGIN - time.time())
                done, _ = await asyncio.wait({post}, timeout=max(beat, 0.0))
                if done:
                    return post.result()
                renewed_at = time.time()
                renewed: bool | None
                try:
                    renewed = await self.store.renew_callback(
                        item, owner=self.owner, lease_seconds=self.lease_seconds
                    )
                except Exception:
                    renewed = None  # the database did not answer: try again while time lasts
                if renewed:
                    held_until = renewed_at + self.lease_seconds
                elif renewed is False or time.time() >= held_until - LEASE_MARGIN:
                    raise LeaseLost(item.delivery_id)
        finally:
            if not post.done():
                post.cancel()
                await asyncio.gather(post, return_exceptions=True)
