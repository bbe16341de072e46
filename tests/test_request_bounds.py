"""Request heads and bodies against a real `ghapp serve` process: cap, deadlines, every byte.

Each request is written over a raw socket, so the test decides how the bytes fall into reads:
a whole head in one write, a head a byte at a time, heads behind a pipelined request, empty
lines before a head. The limits are those of docs/limits.md: a head of at most 64 KiB counted
whole (`431` past it), complete within 10 s of its first byte or the connection is closed, and
a body complete within 30 s of its head (`408`; shortened here with GHAPP_BODY_TIMEOUT).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.web.protocol import BoundedHttp

KIB = 1024
MAX_HEAD = 64 * KIB
HEAD_TIMEOUT = 10.0


@pytest.fixture
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProcessServer]:
    """`ghapp serve` with the environment a test's indirect parameter adds."""
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await stack.stop_ghapp()  # ghapp runs as a real process instead
    served = ProcessServer(stack.settings, str(tmp_path / "serve.log"))
    served.env.update(getattr(request, "param", {}))
    try:
        await served.start()
        yield served
    finally:
        await served.stop()
        await stack.close()


@dataclass
class Outcome:
    statuses: list[int]  # the status of each answer read, in order
    closed: bool  # the server closed the connection
    seconds: float  # until the last answer, or the close


def head(path: str = "/healthz", size: int = 0, method: str = "GET", extra: str = "") -> bytes:
    """A request head of exactly `size` bytes (padded with a header), or a minimal one."""
    start = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
    if not size:
        return (start + "\r\n").encode()
    filler = size - len(start) - len("X-Filler: \r\n\r\n")
    assert filler > 0
    return (start + "X-Filler: " + "f" * filler + "\r\n\r\n").encode()


async def talk(
    server: ProcessServer,
    pieces: Sequence[bytes],
    *,
    pause: float = 0.0,
    answers: int = 1,
    timeout: float = 30.0,
) -> Outcome:
    """Write the pieces (one write each, `pause` apart) and read up to `answers` answers."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

    async def send() -> None:
        try:
            for n, piece in enumerate(pieces):
                if n and pause:
                    await asyncio.sleep(pause)
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    sender = asyncio.create_task(send())
    statuses: list[int] = []
    closed = False
    try:
        async with asyncio.timeout(timeout):
            while len(statuses) < answers:
                line = await reader.readline()
                if not line:
                    closed = True
                    break
                statuses.append(int(line.split()[1]))
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
            if not closed and (answers == 0 or statuses[-1] >= 400):
                # A refusal closes the connection (and no answer at all: wait for the close).
                closed = await reader.read(1) == b""
    except TimeoutError:
        pass
    except (ConnectionError, asyncio.IncompleteReadError):
        closed = True
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return Outcome(statuses, closed, loop.time() - started)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[n : n + size] for n in range(0, len(data), size)]


async def test_a_head_is_capped_at_64_kib_however_its_bytes_arrive(server: ProcessServer) -> None:
    big = head(size=100_000)
    small = head(size=60 * KIB)
    # Whole in one write: the bug was a 100 KB head in one read answered 200.
    assert (await talk(server, [big], timeout=10)).statuses == [431]
    assert (await talk(server, [small], timeout=10)).statuses == [200]
    # Just under and just over the cap, counted whole.
    assert (await talk(server, [head(size=MAX_HEAD)], timeout=10)).statuses == [200]
    assert (await talk(server, [head(size=MAX_HEAD + 1)], timeout=10)).statuses == [431]
    # In 1 KiB writes, and with the ending split across two writes.
    assert (await talk(server, split(big, KIB), timeout=10)).statuses == [431]
    cut = len(small) - 2
    assert (await talk(server, [small[:cut], small[cut:]], pause=0.2)).statuses == [200]
    # Empty lines before the request line are not the end of a head.
    assert (await talk(server, [b"\r\n\r\n" + big], timeout=10)).statuses == [431]
    # Behind a request in the same write (pipelined), after a Content-Length body and after a
    # chunked one (whose last chunk "0\r\n\r\n" looks like the end of a head).
    body = b'{"a": 1}'
    posted = head("/healthz", method="POST", extra=f"Content-Length: {len(body)}\r\n") + body
    chunked = head("/healthz", method="POST", extra="Transfer-Encoding: chunked\r\n")
    chunked += b"8\r\n" + body + b"\r\n0\r\n\r\n"
    for first, status in ((head(), 200), (posted, 405), (chunked, 405)):
        # The first request is answered if it reached uvicorn in a read of its own.
        outcome = await talk(server, [first + big], answers=2, timeout=10)
        assert 431 in outcome.statuses and set(outcome.statuses) <= {status, 431}, outcome
        assert outcome.closed, outcome
        # A small head behind it is served.
        outcome = await talk(server, [first + head()], answers=2, timeout=10)
        assert outcome.statuses == [status, 200], outcome
    # Keep-alive: a second request on the same connection is served.
    assert (await talk(server, [head(), head()], pause=0.5, answers=2)).statuses == [200, 200]


async def test_a_head_must_be_complete_within_10_s(server: ProcessServer) -> None:
    token = server.env["ORCHESTRATOR_TOKEN"]
    partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    slow_head = split(head(size=600), 100)  # six writes a second apart: complete in ~5 s
    body = b"x" * 12
    slow_body = [
        head(
            "/api/v1/deployments",
            method="POST",
            extra=f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n",
        ),
        *split(body, 1),
    ]
    stalled, silent, slow, trickled = await asyncio.gather(
        talk(server, [partial], answers=0),
        talk(server, [], answers=0),
        talk(server, slow_head, pause=1.0),
        # The head is complete at once; the body takes 12 s (within the 30 s body deadline).
        talk(server, slow_body, pause=1.0),
    )
    # A head begun and left: closed, unanswered, at the deadline (a generous margin after it).
    assert stalled.closed and not stalled.statuses, stalled
    assert HEAD_TIMEOUT - 0.5 < stalled.seconds < HEAD_TIMEOUT + 4, stalled
    # A connection that never sends a byte: closed too.
    assert silent.closed and HEAD_TIMEOUT - 0.5 < silent.seconds < HEAD_TIMEOUT + 4, silent
    # A head that arrives slowly but within the deadline is served.
    assert slow.statuses == [200] and slow.seconds < HEAD_TIMEOUT, slow
    # Past its head, a request is not cut by the head deadline: the body came in 12 s and
    # was read and answered (not JSON: 400/422), with no 408.
    assert trickled.statuses and trickled.statuses[0] in (400, 422), trickled
    assert trickled.seconds > HEAD_TIMEOUT + 1, trickled


@pytest.mark.parametrize("server", [{"GHAPP_BODY_TIMEOUT": "3"}], indirect=True)
async def test_the_body_deadline_answers_408_or_cuts_an_answered_request(
    server: ProcessServer,
) -> None:
    token = server.env["ORCHESTRATOR_TOKEN"]
    api = "Content-Type: application/json\r\nContent-Length: 1000\r\n"
    # The body stalls while the app waits for it: 408, then the connection is closed.
    waiting = [
        head(
            "/api/v1/deployments", method="POST", extra=f"Authorization: Bearer {token}\r\n" + api
        ),
        b"{",
    ]
    # Answered at once (401: no body is read before authorisation), while the client goes on
    # sending its body a byte a second: the connection is cut at the deadline, and no second
    # answer is written into it.
    unauthorised = [head("/api/v1/deployments", method="POST", extra=api), *([b"x"] * 20)]
    late, cut = await asyncio.gather(
        talk(server, waiting, answers=2, timeout=20),
        talk(server, unauthorised, pause=1.0, answers=2, timeout=20),
    )
    assert late.statuses == [408] and late.closed and 2.5 < late.seconds < 8, late
    assert cut.statuses == [401] and cut.closed and 2.5 < cut.seconds < 8, cut


# -- the count itself, read by read ----------------------------------------------------------
# uvloop reads at most 64 KiB at a time; asyncio's own loop reads up to 256 KiB, and a proxy's
# connection may deliver anything. Here the reads are chosen: one read holding a whole head
# over the cap, or a head behind other requests, must still be counted whole.


class Wire(asyncio.Transport):
    """A transport that keeps what is written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = self.eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


class Sink(asyncio.Protocol):
    """Stands in for uvicorn's protocol: keeps what it is handed."""

    def __init__(self) -> None:
        self.got = b""

    def data_received(self, data: bytes) -> None:
        self.got += data


def guard_fed(*reads: bytes) -> tuple[Wire, Sink, BoundedHttp]:
    sink, wire = Sink(), Wire()
    guard = BoundedHttp(inner=sink)
    guard.connection_made(wire)
    for data in reads:
        guard.data_received(data)
    return wire, sink, guard


def refused(wire: Wire) -> bool:
    """Answered 431, its end of the connection shut (closed after a moment's linger)."""
    return wire.eof and wire.written.startswith(b"HTTP/1.1 431")


async def test_every_byte_of_a_head_is_counted_read_by_read() -> None:
    big = head(size=100_000)
    body = b"b" * 70_000
    posted = head("/x", method="POST", extra=f"Content-Length: {len(body)}\r\n") + body
    chunked = head("/x", method="POST", extra="Transfer-Encoding: chunked\r\n")
    chunked += b"5\r\nhello\r\n0\r\n"
    # A whole head over the cap in one read: nothing of it reaches uvicorn, nor what follows.
    wire, sink, guard = guard_fed(big)
    assert refused(wire) and sink.got == b""
    guard.data_received(head())
    assert sink.got == b"" and guard.head_timer is not None  # closed after a moment
    assert refused(guard_fed(b"\r\n" * 10 + big)[0])
    # Behind a request with a 70 KB body in the same read: only the head is counted, and a
    # small head there is not refused (the body's bytes are not charged to it).
    assert refused(guard_fed(posted + big)[0])
    wire, sink, _ = guard_fed(posted + head())
    assert not wire.eof and sink.got == posted + head()
    # A chunked body's trailer section in the next read, a head over the cap behind it and
    # the start of its body: the trailer looks like a head's end, yet the head is counted.
    posting = head("/x", method="POST", size=100_000).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 200000\r\n\r\n", 1
    )
    assert refused(guard_fed(chunked, b"X-Trailer: a\r\n\r\n" + posting + b"b" * 50_000)[0])
    # 300 pipelined small GETs in one read: each counted on its own.
    wire, sink, _ = guard_fed(head() * 300)
    assert not wire.eof and len(sink.got) == len(head()) * 300
    # Just under the cap in one read, with a body behind it, is handed on whole.
    fits = head("/x", method="POST", size=MAX_HEAD - 64)
    fits = fits.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n", 1) + b"hello"
    wire, sink, guard = guard_fed(fits)
    assert not wire.eof and sink.got == fits
    # The head's deadline: armed while a head is open, gone once it is complete.
    _, _, guard = guard_fed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert guard.head_timer is not None
    guard.data_received(b"\r\n")
    assert guard.head_timer is None and guard.body_timer is None
    guard.connection_lost(None)
