"""uvicorn's httptools protocol with bounds on a request's head and on the time its body takes.

httptools gathers a header of any size in memory before handing it over: past MAX_HEAD bytes of
an incomplete head the connection is answered `431` and closed. A body still incomplete
BODY_TIMEOUT seconds after its headers is answered `408` (or, if the app already answered, cut)
and the connection closed. Both are checked where the bytes arrive, so a request that comes
whole in one read (most webhooks) costs no timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from ghapp.web import limits


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers over their limit\n")
_LATE = _answer(b"408 Request Timeout", b"the request body did not arrive in time\n")


class BoundedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with `431` past MAX_HEAD bytes of head, `408` for a late body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_scope: Any = None
        self._head_bytes = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_cycle: RequestResponseCycle | None = None

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then check the request the bytes belong to."""
        super().data_received(data)
        # uvicorn makes a request's scope when its first byte arrives and its cycle when the
        # head is complete: a scope without its cycle is a head still arriving.
        scope, cycle = self.scope, self.cycle
        if scope is None:
            return
        if cycle is None or cycle.scope is not scope:
            if scope is not self._head_scope:
                self._head_scope, self._head_bytes = scope, 0
            self._head_bytes += len(data)
            if self._head_bytes > limits.MAX_HEAD and not self.transport.is_closing():
                self.logger.warning("request head over %d bytes: refused", limits.MAX_HEAD)
                self.transport.write(_TOO_LARGE)
                self.transport.close()
        elif cycle.more_body:
            if cycle is not self._body_cycle:
                self._forget_body_timer()
                self._body_cycle = cycle
                self._body_timer = self.loop.call_later(
                    limits.BODY_TIMEOUT, self._body_late, cycle
                )
        elif self._body_timer is not None:
            self._forget_body_timer()

    def _forget_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self._body_cycle = None

    def _body_late(self, cycle: RequestResponseCycle) -> None:
        self._body_timer = self._body_cycle = None
        if cycle is not self.cycle or not cycle.more_body or self.transport.is_closing():
            return
        self.logger.warning("request body not complete %gs after its head", limits.BODY_TIMEOUT)
        if not cycle.response_started:
            self.transport.write(_LATE)
        # The app, waiting for the rest, sees the client gone (http.disconnect).
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the body deadline with the connection."""
        self._forget_body_timer()
        super().connection_lost(exc)
