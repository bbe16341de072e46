"""The callback outbox worker: signed verdicts to the orchestrator, retried until delivered."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from ghapp.github.retry import backoff
from ghapp.metrics import Metrics
from ghapp.store import OutboxItem, SqlStore
from ghapp.work.workers import Worker

log = logging.getLogger("ghapp.callbacks")
CALLBACK_TIMEOUT = 10.0
EVENT = "deployment.completed"


def sign(body: bytes, secret: str) -> str:
    """The X-Ghapp-Signature-256 value of a body: `sha256=<lowercase hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    """CALLBACK_RETRY_BASE, _MAX_INTERVAL and _FOR of DESIGN.md."""

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
        session: aiohttp.ClientSession,
        *,
        secret: str,
        policy: RetryPolicy,
        lease_seconds: float = 30.0,
    ) -> None:
        super().__init__(store, "cb")
        self.session = session
        self.secret = secret
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.metrics = Metrics()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A verdict was just stored: look at the outbox now instead of at the next tick."""
        self._wake.set()

    async def run(self, idle_wait: float = 1.0) -> None:
        """Deliver forever; cancel the task to stop."""
        while True:
            self._wake.clear()
            try:
                items = await self.store.claim_callbacks(
                    owner=self.owner, lease_seconds=self.lease_seconds
                )
                if items:
                    await asyncio.gather(*(self.deliver(item) for item in items))
                    continue
                due = await self.store.next_callback_due()
            except Exception:
                log.exception("callback outbox pass failed")
                due = None
            wait = idle_wait if due is None else min(max(due - time.time(), 0.01), idle_wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def deliver(self, item: OutboxItem) -> bool:
        """Post one callback attempt and record its outcome; True when delivered."""
        record = await self.store.get(item.deployment_id)
        if record is None or item.url is None:
            await self.store.finish_callback(
                item, owner=self.owner, state="failed", error="no deployment or no callback URL"
            )
            return False
        if item.body is not None:
            # Queued with the change it announces: a start is sent as it was, even if the
            # verdict has come since.
            body = item.body.encode()
        else:
            public = record.public()
            public.callback.attempts = item.attempts + 1
            public.callback.state = "pending"
            body = public.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ghapp",
            "X-Ghapp-Event": item.event,
            "X-Ghapp-Delivery": item.delivery_id,
            "X-Ghapp-Signature-256": sign(body, self.secret),
        }
        status: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                item.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT),
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = repr(exc)
        extra = {
            "deployment_id": item.deployment_id,
            "delivery_id": item.delivery_id,
            "event": item.event,
        }
        if status is not None and 200 <= status < 300:
            self.metrics.callback_attempts.labels("delivered").inc()
            seen = record.run_completed_seen_at
            if seen is not None and item.attempts == 0 and item.event == EVENT:
                self.metrics.verdict_latency.observe(
                    max((datetime.now(UTC) - seen).total_seconds(), 0.0)
                )
            await self.store.finish_callback(
                item, owner=self.owner, state="delivered", status=status
            )
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
