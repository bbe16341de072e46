"""A round-robin HTTP load balancer on loopback, to put several ghapp replicas behind one URL.

For tests and benchmarks of replicas: each request goes to the next replica; one that does
not answer (killed) is skipped, as a real load balancer's health checks would."""

from __future__ import annotations

import itertools
import socket
from collections import Counter

import aiohttp
from aiohttp import web

# Hop-by-hop headers are the proxy's own business, not the replica's.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RoundRobinBalancer:
    """Forwards every request to the replicas in turn, skipping unreachable ones."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = list(upstreams)
        self.sent: Counter[str] = Counter()
        self.url = ""
        self._next = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        """Listen on a free loopback port; returns the base URL."""
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        """Stop listening and close connections to the replicas."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        start = next(self._next)
        for offset in range(len(self.upstreams)):
            upstream = self.upstreams[(start + offset) % len(self.upstreams)]
            try:
                async with self._session.request(
                    request.method,
                    upstream + request.path_qs,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                ) as answer:
                    payload = await answer.read()
                    self.sent[upstream] += 1
                    out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
                    return web.Response(status=answer.status, body=payload, headers=out)
            except aiohttp.ClientConnectorError:
                continue  # never reached this replica: another may take it
            except aiohttp.ClientError as exc:
                # The replica died holding the request: like a real balancer, answer 502.
                return web.json_response({"error": f"replica failed: {exc!r}"}, status=502)
        return web.json_response({"error": "no replica answered"}, status=502)
