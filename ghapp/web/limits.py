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


class BodyTimeout(Exception):
    """The body did not arrive in time."""


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


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class BodyDeadline:
    """ASGI middleware: `408` (and the connection closed) for a body that is late.

    A request answered without its body being read (an unauthorised one, one over its cap)
    keeps its connection: uvicorn discards the rest of the body as it comes, in constant
    memory, and the client reads the answer (closing at once would reset the connection and
    lose the answer while the client is still sending).
    """

    def __init__(self, app: ASGIApp, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except BodyTimeout:
            if started:
                raise
            await _send_408(send)


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
