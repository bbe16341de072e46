"""A server that closes an idle kept-alive connection loses none of ghapp's requests.

uvicorn closes a connection idle for 5 s. A client that takes it from its pool at that moment
lost its request ("Can not write request body", "Server disconnected"): the simulator lost
webhooks that way. Now every client reuses an idle connection for at most IDLE_REUSE seconds,
and a POST is sent again only when none of it was written (ghapp/keepalive.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from ghapp import keepalive
from ghapp.client import Client
from ghapp.core.signatures import hub_signature
from ghapp.github.sessions import LazySession
from ghapp.simulator.model import Faults
from ghapp.simulator.stack import Stack
from ghapp.simulator.webhooks import WebhookSender

# Longer than uvicorn's keep-alive (5 s, what `ghapp serve` runs with).
QUIET = 6.0


class ThreadedStack:
    """The simulator and ghapp (uvicorn, production's keep-alive) on a loop of their own, so
    that they close idle connections while the test's loop is busy."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._tmp = tempfile.TemporaryDirectory(prefix="ghapp-keepalive-")
        self.stack: Stack = self._call(Stack.start(f"sqlite:///{self._tmp.name}/ghapp.db"))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def close(self) -> None:
        try:
            self._call(self.stack.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._tmp.cleanup()


@pytest.fixture
def threaded() -> Iterator[Stack]:
    running = ThreadedStack()
    yield running.stack
    running.close()


def _ping(secret: str, guid: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": guid,
        "X-Hub-Signature-256": hub_signature(body, secret),
    }
    return body, headers


async def test_requests_after_6_s_of_quiet_all_arrive(threaded: Stack) -> None:
    webhook_url = threaded.base_url + threaded.settings.webhook_path
    secret = threaded.settings.webhook_secret[0]
    ids = itertools.count(1)
    # The simulator's webhook sender; the session of ghapp's GitHub client and callback
    # sender; the orchestrator's client (and so `ghapp deploy`/`watch`).
    sender = WebhookSender(secret=lambda: secret, url=lambda: webhook_url, app_id=1,
                           faults=Faults(), next_id=lambda: next(ids))
    await sender.start()
    lazy = LazySession()
    client = Client(threaded.base_url, threaded.settings.orchestrator_token or "")

    async def callback_like(guid: str) -> int:
        body, headers = _ping(secret, guid)
        async with keepalive.request(
            lazy.get(), "POST", webhook_url, data=body, headers=headers
        ) as response:
            return response.status

    try:
        async with client:
            first = await sender.post("ping", {"zen": "one", "hook_id": 1})
            assert first.status == 200, first.error
            assert await callback_like("lazy-1") == 200
            deployment = await client.deploy("acme/one")
            # The quiet passes while this loop is busy: the servers close their idle
            # connections at 5 s, and the clients' pools have not yet seen it when the next
            # requests go (what happens at exactly 5 s of quiet, made certain).
            time.sleep(QUIET)  # noqa: ASYNC251 - blocking the loop is the point
            second = await sender.post("ping", {"zen": "two", "hook_id": 1})
            assert (second.status, second.error) == (200, None)
            assert await callback_like("lazy-2") == 200
            again = await client.deploy("acme/two")
            assert (await client.get(deployment.id)).id == deployment.id
    finally:
        await sender.stop()
        await lazy.close()
    assert again.repository == "acme/two"
    # The webhook arrived once: a delivery the server may have taken is never sent twice.
    assert [d.status for d in sender.deliveries] == [200, 200]


class ClosingServer:
    """A keep-alive HTTP/1.1 server on loopback that answers 200 and can close its
    connections at the moment the test chooses; it records every request it reads whole."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.hang_up_after_next = False
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def stop(self) -> None:
        self.close_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def close_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                request_line, *fields = head.split("\r\n")
                length = next(
                    (int(f.split(":", 1)[1]) for f in fields
                     if f.lower().startswith("content-length:")),
                    0,
                )
                self.requests.append((request_line.split()[0], await reader.readexactly(length)))
                if self.hang_up_after_next:
                    # It read the request whole, then went away without answering.
                    self.hang_up_after_next = False
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[ClosingServer]:
    running = ClosingServer()
    await running.start()
    yield running
    await running.stop()


def closing_on_reuse(server: ClosingServer) -> tuple[aiohttp.TraceConfig, list[bool]]:
    """A trace that, when armed, has the server close the pooled connection just as it is
    taken from the pool, and waits for the client to see the close: the request goes to a
    connection already closed, before any of it is written."""
    armed: list[bool] = []

    async def on_reuse(*_: Any) -> None:
        if armed:
            armed.clear()
            server.close_connections()
            await asyncio.sleep(0.05)

    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(on_reuse)
    return trace, armed


async def test_a_post_none_of_which_was_written_is_sent_once_more(server: ClosingServer) -> None:
    trace, armed = closing_on_reuse(server)
    async with keepalive.session(trace_configs=[trace]) as session:
        async with keepalive.request(session, "POST", server.url, data=b"one") as answer:
            assert answer.status == 200
        armed.append(True)
        async with keepalive.request(session, "POST", server.url, data=b"two") as answer:
            assert answer.status == 200
        # aiohttp alone loses it: that was the simulator's lost webhook.
        armed.append(True)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            async with session.post(server.url, data=b"lost"):
                pass
    assert server.requests == [("POST", b"one"), ("POST", b"two")]


async def test_a_post_that_may_have_arrived_is_never_sent_twice(server: ClosingServer) -> None:
    async with keepalive.session() as session:
        async with keepalive.request(session, "POST", server.url, data=b"one") as answer:
            assert answer.status == 200
        server.hang_up_after_next = True
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with keepalive.request(session, "POST", server.url, data=b"dispatch"):
                pass
    # The server read it whole (it may have acted on it): it was sent exactly once.
    assert server.requests == [("POST", b"one"), ("POST", b"dispatch")]


async def test_an_idempotent_request_is_sent_again(server: ClosingServer) -> None:
    async with keepalive.session() as session:
        async with keepalive.request(session, "GET", server.url) as answer:
            assert answer.status == 200
        server.hang_up_after_next = True
        async with keepalive.request(session, "GET", server.url) as answer:
            assert answer.status == 200
    assert [method for method, _ in server.requests] == ["GET", "GET", "GET"]


async def test_idle_connections_are_not_reused_past_idle_reuse(server: ClosingServer) -> None:
    opened: list[bool] = []

    async def on_create(*_: Any) -> None:
        opened.append(True)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with keepalive.session(trace_configs=[trace]) as session:
        for pause in (0.0, 0.2, keepalive.IDLE_REUSE + 0.3):
            await asyncio.sleep(pause)
            async with keepalive.request(session, "GET", server.url) as answer:
                assert answer.status == 200
    # Reused after 0.2 s of quiet; a new one after IDLE_REUSE (before a server closes it).
    assert len(opened) == 2
