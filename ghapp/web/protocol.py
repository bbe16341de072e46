"""Bounds on a request's head and body, kept in front of uvicorn's HTTP protocol.

`BoundedHttp` is the asyncio protocol uvicorn builds for each connection (its public
`Config(http=...)` takes a protocol class). It holds uvicorn's own httptools protocol and hands
it every read unchanged (composition: nothing of uvicorn is overridden or read), and watches the
same bytes with a parser of its own (httptools' public `HttpRequestParser`, the parser uvicorn
uses, so both agree on where a request starts and ends):

- a head (request line and headers, up to the blank line) over MAX_HEAD bytes, every byte
  counted however the reads fall, is answered `431` and the connection closed;
- a head not complete HEAD_TIMEOUT seconds after its first byte (or after the connection
  opened) closes the connection;
- a body not complete BODY_TIMEOUT seconds after its head is answered `408` if nothing was
  answered yet, and the connection closed either way.

An answered refusal closes the connection lingering (the answer with a FIN, what still arrives
dropped for LINGER seconds), so that the client can read it.

Why not uvicorn's own settings: `h11_max_incomplete_event_size` bounds only a head still
incomplete (a whole 100 KB head in one read passes) and only with the slower h11 parser;
`timeout_keep_alive` starts once a response is complete, so nothing bounds a head, or a
connection that never sends one; `limit_concurrency` counts connections, not their bytes. The
limits are described for users in docs/limits.md.

What this leans on of uvicorn beyond `Config(http=...)`: the protocol class its `--http` option
names, the keyword arguments its server builds a protocol with (`_loop` among them), and the
transport methods that protocol calls (`_Transport`). uvicorn is bounded below its next minor
release in pyproject.toml; tests/test_dependency_bounds.py fails when that bound moves unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, cast

import httptools

from ghapp.web import limits

log = logging.getLogger("ghapp.http")

# An empty line ends a head (httptools refuses a bare LF, so CRLF is the only ending).
_END = b"\r\n\r\n"
# Empty lines a client may send before a request line (not the end of a head).
_LEADING_EOL = re.compile(rb"[\r\n]*")
_EOL_BYTES = (b"\r", b"\n")
# What the parser's callbacks note during one read, in order: a count of body bytes (>= 0),
# or one of these.
_HEADERS, _CHUNKED, _COMPLETE = -1, -2, -3


def _answer(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


MAX_HEAD = limits.MAX_HEAD
# Seconds a refused connection stays open, dropping what arrives, before it is closed.
LINGER = 2.0
_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"request headers over their limit\n")
_LATE = _answer(b"408 Request Timeout", b"the request body did not arrive in time\n")


def _inner_class() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, found by the name its `--http` option knows it by."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    found: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS["httptools"])
    return found


class _Transport(asyncio.Transport):
    """The connection's transport as uvicorn's protocol sees it: notes answers and pauses."""

    __slots__ = ("_guard", "_real")

    def __init__(self, real: asyncio.Transport, guard: BoundedHttp) -> None:
        super().__init__()
        self._real = real
        self._guard = guard

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write, noting that the connection has answered."""
        self._guard.answered = True
        self._real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Write, noting that the connection has answered."""
        self._guard.answered = True
        self._real.writelines(list_of_data)

    def pause_reading(self) -> None:
        """Pause, noting it: a body cannot arrive while uvicorn does not read."""
        self._guard.paused = True
        self._real.pause_reading()

    def resume_reading(self) -> None:
        """Resume reading."""
        self._real.resume_reading()

    def is_reading(self) -> bool:
        """Whether the real transport reads."""
        return self._real.is_reading()

    def close(self) -> None:
        """Close the real transport."""
        self._real.close()

    def is_closing(self) -> bool:
        """Whether the real transport is closing."""
        return self._real.is_closing()

    def abort(self) -> None:
        """Abort the real transport."""
        self._real.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The real transport's information (socket, peer name, TLS)."""
        return self._real.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        """As the real transport."""
        return self._real.can_write_eof()

    def write_eof(self) -> None:
        """As the real transport."""
        self._real.write_eof()

    def get_write_buffer_size(self) -> int:
        """As the real transport."""
        return self._real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """As the real transport."""
        return self._real.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """As the real transport."""
        self._real.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the connection to another protocol (an upgrade): it reads unwatched then."""
        self._real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The real transport's protocol (this guard)."""
        return self._real.get_protocol()


class BoundedHttp(asyncio.Protocol):
    """uvicorn's httptools protocol behind a head cap, a head deadline and a body deadline."""

    def __init__(self, *, inner: asyncio.Protocol | None = None, **uvicorn_arguments: Any) -> None:
        """Build uvicorn's protocol with what uvicorn passes (or watch `inner`, in tests)."""
        # Whatever uvicorn passes to the protocol it builds goes to its own protocol unchanged.
        self.inner = inner if inner is not None else _inner_class()(**uvicorn_arguments)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        # As uvicorn sets it for its parser, so that both read the same requests.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.notes: list[int] = []
        self._note = self.notes.append
        # Between a head's end and its body's end: False. Between requests: True (the next
        # bytes are a head's).
        self.in_head = True
        self.head_bytes = 0
        # A request line has begun (empty lines before one are not the end of a head).
        self.head_started = False
        # The head's last three bytes, for an ending split across two reads.
        self.tail = b""
        # Inside a chunked body (its framing is not counted: see `_refused`).
        self.chunked = False
        # Answered 431 or 408: what still arrives is dropped until the connection closes.
        self.refused = False
        self.answered = False
        self.paused = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Arm the head deadline and hand uvicorn's protocol a transport that notes answers."""
        self.transport = cast(asyncio.Transport, transport)
        self.head_timer = self.loop.call_later(limits.HEAD_TIMEOUT, self._head_late)
        self.inner.connection_made(_Transport(self.transport, self))

    def data_received(self, data: bytes) -> None:
        """Check the bytes against the bounds, then hand them on."""
        if self.transport is None or self.transport.is_closing() or self.refused:
            return
        if self._refused(data):
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """As uvicorn's protocol says."""
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        """Passed on."""
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        """Passed on."""
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadlines with the connection."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.parser = None
        self.inner.connection_lost(exc)

    # -- the parser's callbacks (called during `feed_data`) ---------------------------------

    def on_headers_complete(self) -> None:
        """A head ended."""
        self._note(_HEADERS)

    def on_body(self, body: bytes) -> None:
        """Body bytes (their count places what follows them)."""
        self._note(len(body))

    def on_chunk_header(self) -> None:
        """A chunked body: its framing is not counted in the body bytes."""
        self._note(_CHUNKED)

    def on_message_complete(self) -> None:
        """A request (head and body) ended."""
        self._note(_COMPLETE)

    # -- the bounds -------------------------------------------------------------------------

    def _refused(self, data: bytes) -> bool:
        """Account for one read; True when the connection was refused because of it."""
        self.notes.clear()
        if self.parser is not None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # uvicorn answers it as a plain request and reads nothing more of the
                # connection: from here on every byte counts as a head that never ends.
                self.parser = None
            except httptools.HttpParserError:
                # uvicorn's parser refuses it as well (400) and closes the connection.
                self.parser = None
                return False
        # Walk the read: `pos` is where the bytes not yet placed begin. It never passes the
        # true place (body bytes are counted without chunked framing), and is exact while
        # only heads and Content-Length bodies came before it; once it is not, nothing more
        # of the read is placed and every later head is charged from `pos` to the read's end
        # (counted long, never short).
        # A chunked body begun in an earlier read: where it ends in this one is not known
        # (its trailer section even looks like a head), so nothing here is placed.
        pos, exact, size = 0, not self.chunked, len(data)
        for note in self.notes:
            if note >= 0:
                if exact:
                    pos = min(pos + note, size)
            elif note == _HEADERS:
                end = self._head_end(data, pos) if exact else -1
                if end < 0:
                    if self._over(size - pos):
                        return True
                    exact = False
                else:
                    if self._over(end - pos):
                        return True
                    pos = end
                # The head is complete: its deadline ends (its body's is armed below, once
                # the read is placed, unless the body came whole with it).
                if self.head_timer is not None:
                    self.head_timer.cancel()
                    self.head_timer = None
                self.in_head, self.head_started, self.head_bytes, self.tail = False, False, 0, b""
                self.answered = self.paused = False
            elif note == _CHUNKED:
                exact = False
                self.chunked = True
            else:
                self.chunked = False
                if self.body_timer is not None:
                    self.body_timer.cancel()
                    self.body_timer = None
                self.in_head, self.head_started, self.head_bytes = True, False, 0
        if not self.in_head:
            if self.body_timer is None:
                self.body_timer = self.loop.call_later(limits.BODY_TIMEOUT, self._body_late)
        elif pos < size:
            if not self.head_started:
                skipped = _LEADING_EOL.match(data, pos).end()  # type: ignore[union-attr]
                self.head_started = skipped < size
                self.tail = data[max(skipped, size - 3) :]
            else:
                self.tail = (self.tail + data[-3:])[-3:]
            if self._over(size - pos):
                return True
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(limits.HEAD_TIMEOUT, self._head_late)
        return False

    def _head_end(self, data: bytes, pos: int) -> int:
        """Where the head that is open at `pos` ends (just past its empty line), or -1."""
        if not self.head_started:
            if data[pos : pos + 1] in _EOL_BYTES:
                pos = _LEADING_EOL.match(data, pos).end()  # type: ignore[union-attr]
            self.tail = b""
        elif pos == 0 and self.tail:
            # An ending split across reads: the tail of the last one and this one's start.
            joined = self.tail + data[:3]
            found = joined.find(_END)
            if found >= 0:
                return found + 4 - len(self.tail)
        found = data.find(_END, pos)
        return found + 4 if found >= 0 else -1

    def _over(self, count: int) -> bool:
        """Add head bytes; past MAX_HEAD answer `431` and close."""
        self.head_bytes += count
        if self.head_bytes <= MAX_HEAD:
            return False
        log.warning("request head over %d bytes: refused", MAX_HEAD)
        # Past an upgrade uvicorn is answering the request: no second answer then.
        self._refuse(_TOO_LARGE if self.parser is not None else None)
        return True

    def _refuse(self, answer: bytes | None) -> None:
        """Close the connection; with an answer, after it has had time to reach the client."""
        assert self.transport is not None
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.parser = None
        if self.transport.is_closing() or self.refused:
            return
        if answer is None:
            self.transport.close()
            return
        # A lingering close: the answer goes out with a FIN, and what the client still sends
        # is read and dropped for a moment. Closed at once with unread bytes, the socket would
        # send a reset, which can destroy the answer before the client has read it.
        self.refused = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        # In the head timer's place: no head is awaited on this connection any more.
        self.head_timer = self.loop.call_later(LINGER, self.transport.close)

    def _head_late(self) -> None:
        self.head_timer = None
        log.warning("request head not complete within %gs: connection closed", limits.HEAD_TIMEOUT)
        self._refuse(None)

    def _body_late(self) -> None:
        self.body_timer = None
        log.warning("request body not complete %gs after its head", limits.BODY_TIMEOUT)
        # `408` only while uvicorn waits for this body with nothing written since its head;
        # otherwise (an answer begun, or a request queued behind another) the connection is
        # cut: the app, waiting for the rest, sees the client gone (http.disconnect).
        quiet = not (self.answered or self.paused)
        self._refuse(_LATE if quiet else None)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _cancel_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
