"""uvicorn's httptools protocol with a bound on a request's head (h11 has one built in).

httptools gathers a header of any size in memory before handing it over; this closes the
connection with `431` once more than MAX_HEAD bytes arrived without the head being complete.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ghapp.web.limits import MAX_HEAD

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\n"
    b"connection: close\r\n\r\n"
    b"request headers over their limit\n"
)


class HeadLimitedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol that answers `431` and closes past MAX_HEAD bytes of head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_scope: Any = None
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Feed the parser; count what arrives while a request's head is still incomplete."""
        super().data_received(data)
        # uvicorn makes a request's scope when its first byte arrives and its cycle when the
        # head is complete: a scope without its cycle is a head still arriving.
        scope = self.scope
        if scope is None or (self.cycle is not None and self.cycle.scope is scope):
            return
        if scope is not self._head_scope:
            self._head_scope, self._head_bytes = scope, 0
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD and not self.transport.is_closing():
            self.logger.warning("request head over %d bytes: refused", MAX_HEAD)
            self.transport.write(_TOO_LARGE)
            self.transport.close()
