"""Whether a dispatch may have reached GitHub: the line between a `503` and a `202`.

A dispatch whose request never left (connection refused, no connection in time) can be
refused to the orchestrator, who sends it again; one whose request was written and whose
answer is late may already have started a run, so it must be recorded, never sent twice.
The session's trace says when a request's headers were written."""

from __future__ import annotations

import contextvars
import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp


@dataclass
class DispatchWatch:
    """What one synchronous dispatch's requests did so far (set as the current watch)."""

    # True when the session's trace reports requests written; otherwise a dispatch request
    # counts as sent from the moment it is started, unless it fails to connect.
    traced: bool = False
    # A dispatch request may have reached GitHub and its answer has not come.
    in_flight: bool = False
    # The last failure seen, as a sentence naming the host (for the 503's message).
    last_error: str | None = None
    # The status of the last answer to a dispatch request (a 5xx: GitHub may have the run).
    status: int | None = None
    # A dispatch request may have reached GitHub at some point (it was started or written).
    maybe_sent: bool = False

    def starting(self) -> None:
        """A dispatch request is about to be sent."""
        if not self.traced:
            self.in_flight = self.maybe_sent = True

    def written(self) -> None:
        """The request's headers were written to the connection (from the session's trace)."""
        self.in_flight = self.maybe_sent = True

    def answered(self, status: int = 200) -> None:
        """GitHub's answer came: whatever it says, nothing is in flight any more."""
        self.in_flight = False
        self.status = status

    def not_connected(self) -> None:
        """The request failed before a connection existed: it never left."""
        self.in_flight = False
        if not self.traced:
            self.maybe_sent = False


current: contextvars.ContextVar[DispatchWatch | None] = contextvars.ContextVar(
    "ghapp_dispatch_watch", default=None
)


async def _on_headers_sent(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: Any
) -> None:
    watch = context.trace_request_ctx
    if isinstance(watch, DispatchWatch):
        watch.written()


@functools.cache
def _trace() -> aiohttp.TraceConfig:
    # One for the process, made with the first session (aiohttp is loaded only then).
    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    return trace


def new_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose dispatch requests say when they were written, safe from
    servers that close idle connections (see ghapp.keepalive)."""
    from ghapp import keepalive

    return keepalive.session(trace_configs=[_trace()], **kwargs)


def is_traced(session: aiohttp.ClientSession) -> bool:
    """Whether a session was made by `new_session`."""
    return _trace() in session.trace_configs
