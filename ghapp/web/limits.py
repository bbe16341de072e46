"""What a request may cost before it is trusted: body caps, a body deadline, a bounded head.

Bodies are read as a stream (`read_body`) and refused past their cap; a body that has not
fully arrived `body_timeout` seconds after its headers is answered `408` (`BodyDeadline`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Operator page forms (and the sign-in form, read before it is checked), and API bodies.
FORM_CAP = 16 * 1024
API_CAP = 1024 * 1024
# Request line plus headers: GitHub's webhook headers are about 1 KiB, a browser's under 8 KiB.
MAX_HEAD = 64 * 1024
# Seconds from a request's headers to the end of its body (the setting BODY_TIMEOUT, hidden).
BODY_TIMEOUT = 30.0


class TooLarge(Exception):
    """The body is over its cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"the body is over {cap} bytes")
        self.cap = cap


async def read_body(request: Request, cap: int) -> bytes:
    """The body, read as a stream; TooLarge past `cap` (at once when Content-Length says so)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise TooLarge(cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(cap)
        chunks.append(chunk)
    # A body usually comes in one piece: no copy then.
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyDeadlines:
    """The requests waiting for their body, and a task that cancels those past their deadline.

    One sweep a second instead of a timer per request: on the webhook path a timer (or an
    `asyncio.timeout` around each receive) cost 5 to 15 us a delivery; this costs a dict entry.
    """

    def __init__(self, timeout: float = BODY_TIMEOUT) -> None:
        self.timeout = timeout
        # Insertion order is deadline order (one timeout for all): the sweep stops at the first
        # entry still in time. Each entry: [deadline, waiting in receive now, expired].
        self.waiting: dict[asyncio.Task[Any], list[Any]] = {}

    async def run(self) -> None:
        """Sweep until cancelled (the app's lifespan runs this)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now = loop.time()
            for task, entry in list(self.waiting.items()):
                if entry[0] > now:
                    break
                if entry[1]:
                    del self.waiting[task]
                    entry[2] = True
                    task.cancel()


class BodyDeadline:
    """ASGI middleware: `408` (and the connection closed) for a body that is late.

    A request answered without its body being read (an unauthorised one, one over its cap)
    keeps its connection: uvicorn discards the rest of the body as it comes, in constant
    memory, and the client reads the answer (closing at once would reset the connection and
    lose the answer while the client is still sending).
    """

    def __init__(self, app: ASGIApp, deadlines: BodyDeadlines) -> None:
        self.app = app
        self.deadlines = deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        waiting = self.deadlines.waiting
        entry = [asyncio.get_running_loop().time() + self.deadlines.timeout, False, False]
        waiting[task] = entry

        async def timed_receive() -> Message:
            if task not in waiting:
                return await receive()
            entry[1] = True
            message = await receive()
            entry[1] = False
            if message["type"] != "http.request" or not message.get("more_body", False):
                waiting.pop(task, None)
            return message

        try:
            await self.app(scope, timed_receive, send)
        except asyncio.CancelledError:
            if not entry[2]:
                raise
            # Cancelled by the sweep while waiting for the body: nothing was answered yet.
            task.uncancel()
            await _send_408(send)
        finally:
            waiting.pop(task, None)


async def _send_408(send: Send) -> None:
    body = b'{"error":"timeout","message":"the request body did not arrive in time"}'
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # What is left of the body may never come: this connection is done.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def uvicorn_limits() -> dict[str, Any]:
    """uvicorn options that bound a request's head (`431`/`400` past MAX_HEAD)."""
    options: dict[str, Any] = {"h11_max_incomplete_event_size": MAX_HEAD}
    try:
        from ghapp.web.protocol import HeadLimitedHttpTools
    except ImportError:  # httptools absent: h11 has the bound built in
        options["http"] = "h11"
    else:
        options["http"] = HeadLimitedHttpTools
    return options
