"""A small orchestrator stand-in: receives callbacks, checks their signatures, keeps them.

A callback's signatures are right when `X-Ghapp-Signature-256` and the Standard Webhooks
headers both match its body and its `webhook-timestamp` is within 5 minutes of its arrival."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ghapp.core.signatures import SignatureError, check_signature, check_standard, header


@dataclass
class ReceivedCallback:
    """One callback request as it arrived."""

    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int
    # time.time() once the body was read (the benchmarks' end of verdict latency).
    arrived_at: float = 0.0

    @property
    def event(self) -> str:
        """X-Ghapp-Event (whatever the case of the header's name)."""
        return header(self.headers, "X-Ghapp-Event") or ""

    @functools.cached_property
    def deployment(self) -> dict[str, Any]:
        """The body parsed (once: `wait_for` looks at every callback on each arrival)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class CallbackReceiver:
    """Answers callbacks with 204 (or with the statuses queued in `fail_with`)."""

    secret: str
    fail_with: list[int] = field(default_factory=list)
    # Seconds to take before answering (an orchestrator that is slow to say 2xx); a callback
    # whose sender went away meanwhile is not kept: its answer never reached the sender.
    delay: float = 0.0
    received: list[ReceivedCallback] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on a loopback port; returns the callback URL."""
        app = web.Application()
        app.router.add_post("/callbacks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{sock.getsockname()[1]}/callbacks"
        return self.url

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)
        arrived_at = time.time()
        headers = dict(request.headers)
        try:
            check_signature(body, headers, self.secret)
            check_standard(body, headers, self.secret, now=arrived_at)
            signature_ok = True
        except SignatureError:
            signature_ok = False
        status = self.fail_with.pop(0) if self.fail_with else 204
        callback = ReceivedCallback(
            headers=headers,
            body=body,
            signature_ok=signature_ok,
            status=status,
            arrived_at=arrived_at,
        )
        async with self._arrived:
            self.received.append(callback)
            self._arrived.notify_all()
        return web.Response(status=status)

    def delivered(self) -> list[ReceivedCallback]:
        """Callbacks this receiver accepted (answered 2xx)."""
        return [c for c in self.received if 200 <= c.status < 300]

    async def wait_for(
        self, deployment_id: str, timeout: float = 30.0, event: str = "deployment.completed"
    ) -> ReceivedCallback:
        """The first accepted callback of an event about a deployment, waiting if need be."""

        def find() -> ReceivedCallback | None:
            for callback in self.delivered():
                if callback.deployment.get("id") == deployment_id and callback.event == event:
                    return callback
            return None

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found
