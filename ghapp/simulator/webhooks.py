"""Signed webhook delivery to the App, in order, with the fault switches applied."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ghapp import keepalive
from ghapp.core.signatures import hub_signature
from ghapp.simulator.model import Faults
from ghapp.simulator.runs import Outgoing

HOOKSHOT = "GitHub-Hookshot/5e1d8b3"
DELIVERY_TIMEOUT = 10.0


def sign_sha1(secret: str, body: bytes) -> str:
    """The legacy ``X-Hub-Signature`` value."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@dataclass
class Delivery:
    """One delivery attempt; ``status`` is what the App answered, None when nothing did."""

    id: int
    guid: str
    event: str
    action: str | None
    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    url: str | None
    attempt_time: datetime
    status: int | None = None
    duration: float = 0.0
    error: str | None = None
    dropped: bool = False
    redelivery: bool = False
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    installation_id: int | None = None
    repository_id: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the App answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Item:
    outgoing: Outgoing
    guid: str
    redelivery: bool
    done: asyncio.Future[None]


# GitHub delivers many webhooks at once; those of one run keep their order here (one lane).
LANES = 8


class WebhookSender:
    """Sends webhooks in order per run, several runs at once (one lane per run)."""

    def __init__(self, *, secret: Callable[[], str], url: Callable[[], str | None],
                 app_id: int, faults: Faults, next_id: Callable[[], int]) -> None:
        self._secret = secret
        self._url = url
        self._app_id = app_id
        self._faults = faults
        self._next_id = next_id
        self.hook_id = 480_000_000 + app_id % 1_000_000
        self.deliveries: list[Delivery] = []
        self.held: list[_Item] = []
        self._reordered: dict[int, list[_Item]] = {}
        self._queues: list[asyncio.Queue[_Item]] = [asyncio.Queue() for _ in range(LANES)]
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session and start the worker."""
        # Idle connections are reused briefly, and a delivery none of which was written is sent
        # once more: a connection the App's server closes while idle loses no webhook.
        self._session = keepalive.session(timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT))
        self._workers = [asyncio.create_task(self._run(queue)) for queue in self._queues]

    async def stop(self) -> None:
        """Stop the worker and close the session; queued deliveries are abandoned."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for queue in self._queues:
            while not queue.empty():
                item = queue.get_nowait()
                if not item.done.done():
                    item.done.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def enqueue(self, outgoing: Outgoing, *, guid: str | None = None,
                redelivery: bool = False) -> asyncio.Future[None]:
        """Queue a webhook; the future resolves once it was sent, dropped, held or stashed."""
        item = _Item(outgoing, guid or str(uuid.uuid4()), redelivery,
                     asyncio.get_running_loop().create_future())
        run_id = outgoing.run_id
        if self._faults.hold_webhooks:
            self.held.append(item)
            item.done.set_result(None)
        elif self._faults.reorder_webhooks and run_id is not None:
            stash = self._reordered.setdefault(run_id, [])
            stash.append(item)
            if outgoing.closes_run:
                for queued in reversed(self._reordered.pop(run_id)):
                    self._lane(queued).put_nowait(queued)
            else:
                item.done.set_result(None)
        else:
            self._lane(item).put_nowait(item)
        return item.done

    def _lane(self, item: _Item) -> asyncio.Queue[_Item]:
        return self._queues[(item.outgoing.run_id or 0) % LANES]

    def release(self) -> list[asyncio.Future[None]]:
        """Queue every held webhook, in the order they were held."""
        held, self.held = self.held, []
        futures = []
        for item in held:
            item.done = asyncio.get_running_loop().create_future()
            self._lane(item).put_nowait(item)
            futures.append(item.done)
        return futures

    async def drain(self) -> None:
        """Wait until every queued webhook has been handled."""
        for queue in self._queues:
            await queue.join()

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._handle(item)
            finally:
                if not item.done.done():
                    item.done.set_result(None)
                queue.task_done()

    async def _handle(self, item: _Item) -> None:
        out = item.outgoing
        if self._faults.delay_webhooks > 0:
            await asyncio.sleep(self._faults.delay_webhooks)
        copies = 2 if self._faults.duplicate_webhooks else 1
        dropped = out.lost or self._faults.drops(out.event, out.action)
        for _ in range(copies):
            await self.post(out.event, out.payload, guid=item.guid,
                            redelivery=item.redelivery, dropped=dropped)

    def _headers(self, event: str, guid: str, body: bytes) -> dict[str, str]:
        secret = self._secret()
        return {
            "Accept": "*/*",
            "User-Agent": HOOKSHOT,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(self.hook_id),
            "X-GitHub-Hook-Installation-Target-ID": str(self._app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature": sign_sha1(secret, body),
            "X-Hub-Signature-256": hub_signature(body, secret),
            "Content-Type": "application/json",
        }

    async def post(self, event: str, payload: dict[str, Any], *, guid: str | None = None,
                   redelivery: bool = False, dropped: bool = False) -> Delivery:
        """POST one signed webhook now (or record it dropped) and keep the attempt."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        guid = guid or str(uuid.uuid4())
        installation = payload.get("installation")
        repository = payload.get("repository")
        delivery = Delivery(
            id=self._next_id(), guid=guid, event=event, action=payload.get("action"),
            payload=payload, body=body, headers=self._headers(event, guid, body),
            url=self._url(), attempt_time=datetime.now(UTC), dropped=dropped,
            redelivery=redelivery,
            installation_id=installation.get("id") if isinstance(installation, dict) else None,
            repository_id=repository.get("id") if isinstance(repository, dict) else None,
        )
        self.deliveries.append(delivery)
        if dropped:
            delivery.error = "failed to connect to host"
            return delivery
        if delivery.url is None or self._session is None:
            delivery.error = "no webhook URL configured"
            return delivery
        started = time.monotonic()
        try:
            async with keepalive.request(self._session, "POST", delivery.url, data=body,
                                         headers=delivery.headers) as response:
                delivery.response_body = (await response.read()).decode(errors="replace")
                delivery.status = response.status
                delivery.response_headers = dict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            delivery.error = "timed out" if timed_out else str(exc) or type(exc).__name__
        delivery.duration = round(time.monotonic() - started, 3)
        return delivery
