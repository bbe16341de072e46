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
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Feed the parser; count what arrives while the head is still incomplete."""
        in_head_before = self._in_head
        super().data_received(data)
        if in_head_before and self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self.logger.warning("request head over %d bytes: refused", MAX_HEAD)
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        """A new request: its head starts."""
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        """The head is complete."""
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """What comes next is the next request's head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
