"""Kept-alive HTTP connections that the server closes while they are idle.

A server closes a connection that stayed idle for its keep-alive time (uvicorn, Hypercorn,
Node and Apache: 5 s; gunicorn: 2 s). A client that takes that connection from its pool at the
same moment loses its request: aiohttp says "Server disconnected" or "Can not write request
body". ghapp's HTTP clients (the GitHub client and the callback sender, the orchestrator's
client, the simulator's webhook sender) therefore:

- reuse an idle connection for at most IDLE_REUSE seconds, less than those servers keep one,
  so that the client closes it first (`connector`, `session`): the race does not happen;
- let aiohttp send an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) once more when it
  failed on a connection the server closed, as RFC 9112 (9.3.1) allows: aiohttp does that;
- send any other request (a POST: a dispatch, a callback, a webhook) once more only when none
  of its body was written (`request`): aiohttp's `UploadTracker` counts the body bytes that
  reached the kernel, and a server cannot act on a request whose body never came. A request
  that may have arrived is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

# Shorter than the keep-alive of the servers named above, with room for the time between the
# server's last byte (its clock starts) and the client putting the connection back (ours).
IDLE_REUSE = 1.5


def connector(**options: Any) -> aiohttp.TCPConnector:
    """A TCP connector that reuses an idle connection for at most IDLE_REUSE seconds."""
    import aiohttp

    return aiohttp.TCPConnector(keepalive_timeout=IDLE_REUSE, **options)


def session(**options: Any) -> aiohttp.ClientSession:
    """An aiohttp ClientSession on `connector()` (make it inside a running loop)."""
    import aiohttp

    return aiohttp.ClientSession(connector=connector(), **options)


def unsent(tracker: aiohttp.UploadTracker) -> bool:
    """Whether the tracked request's body was not written whole and none of it left."""
    done = tracker.upload_complete
    written = done.done() and not done.cancelled() and done.exception() is None
    return not written and tracker.bytes_written == 0


def closed_under(exc: BaseException) -> bool:
    """Whether a request failed on a connection that closed, not on making one."""
    import aiohttp

    closed = (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientConnectionResetError,
    )
    return isinstance(exc, closed) and not isinstance(exc, aiohttp.ClientConnectorError)


@contextlib.asynccontextmanager
async def request(
    client: aiohttp.ClientSession, method: str, url: str, **options: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """`client.request(...)` as a context, sent once more if the connection closed under it
    before any of its body was written."""
    import aiohttp

    for attempt in (1, 2):
        tracker = aiohttp.UploadTracker()
        try:
            response = await client.request(method, url, upload_tracker=tracker, **options)
        except Exception as exc:
            if attempt == 2 or not closed_under(exc) or not unsent(tracker):
                raise
            # One turn of the loop, so that the pool sees the closes that came with this one
            # (a server closes its idle connections together) and the retry takes a live one.
            await asyncio.sleep(0)
            continue
        async with response:
            yield response
        return
    raise AssertionError("unreachable")
