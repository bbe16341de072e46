"""Job logs: follow GitHub's redirect to the signed URL without the token, stream the body.

The log host is another origin than the API, and anything may go wrong there: every failure
ends as an exception whose message a person reads, never as a wait without end."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from ghapp.core.logs.excerpt import Excerpt, ExcerptBuilder
from ghapp.github.client import (
    USER_AGENT,
    GitHubClient,
    GitHubUnavailable,
    LogsNotReady,
    LogUnavailable,
)

if TYPE_CHECKING:
    import aiohttp

# Logs past this are cut: the excerpt needs the failing step, not an endless stream.
LOG_SIZE_CAP = 512 * 1024 * 1024
CHUNK_SIZE = 256 * 1024
# One download: a log of hundreds of MiB arrives well within this on any working link; a host
# that sends a byte a second never finishes, and one that goes silent is given up sooner.
DOWNLOAD_SECONDS = 120.0
SILENT_SECONDS = 30.0
CONNECT_SECONDS = 10.0
REDIRECTS = (301, 302, 303, 307, 308)
ATTEMPTS = 7
HOST_FAILURE_ATTEMPTS = 3


class SignedUrlRefused(Exception):
    """The log host refused the signed URL (it expires after about a minute)."""


class LogHostFailed(Exception):
    """The log host failed mid-way (reset, cut short, unreachable): worth another try."""


def _where(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    return f"{host}:{port}" if port else host


def _timeout() -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(
        total=DOWNLOAD_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=SILENT_SECONDS
    )


def _failure(exc: BaseException, where: str, read: int) -> Exception:
    """What a failed download means, in words; permanent ones are LogUnavailable."""
    import aiohttp

    if isinstance(exc, aiohttp.SocketTimeoutError):
        return LogUnavailable(f"the log host {where} sent nothing for {SILENT_SECONDS:g} s")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return LogHostFailed(f"the log host {where} did not accept a connection")
    if isinstance(exc, TimeoutError):
        return LogUnavailable(
            f"the log host {where} had not sent the whole log after {DOWNLOAD_SECONDS:g} s "
            f"({read} bytes received)"
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return LogUnavailable(f"GitHub pointed the log at {exc.url}, which is not an HTTP URL")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return LogHostFailed(f"the log host {where} cut the log short after {read} bytes")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return LogHostFailed(f"the log host {where} closed the connection without answering")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.strerror or "connection failed"
        return LogHostFailed(f"could not connect to the log host {where}: {reason}")
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET:
        return LogHostFailed(f"the log host {where} reset the connection")
    if isinstance(exc, aiohttp.ClientError):
        return LogHostFailed(f"the log host {where} failed: {exc.__class__.__name__}")
    return LogHostFailed(f"the log host {where} failed: {exc.__class__.__name__}")


async def _stream(
    session: aiohttp.ClientSession, url: str, builder: ExcerptBuilder, cap: int
) -> int:
    import aiohttp  # loaded with the session that is passed in

    where = _where(url)
    read = 0
    try:
        # A plain request: no Authorization header ever goes to the log host, and its own
        # redirects are not followed (the signed URL is the only place the log may be).
        async with session.get(
            url, headers={"User-Agent": USER_AGENT}, allow_redirects=False, timeout=_timeout()
        ) as response:
            status = response.status
            if status in REDIRECTS:
                location = response.headers.get("Location", "(nowhere)")
                raise LogUnavailable(
                    f"the log host {where} redirected to {location[:200]}; "
                    "ghapp does not follow the log host's redirects"
                )
            if status in (400, 401, 403, 404, 410):
                raise SignedUrlRefused(f"the log host {where} answered {status}")
            if status >= 500:
                raise GitHubUnavailable(f"the log host {where} answered {status}")
            if status != 200:
                raise SignedUrlRefused(f"the log host {where} answered {status}")
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                # Parsing a chunk is CPU work on text anyone may write: off the event loop.
                await asyncio.to_thread(builder.feed, chunk[: cap - read])
                read += len(chunk)
                if read >= cap:
                    break
            return read
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _failure(exc, where, read) from exc


def _stop(state: RetryCallState) -> bool:
    if state.attempt_number >= ATTEMPTS:
        return True
    failure = state.outcome.exception() if state.outcome is not None else None
    return isinstance(failure, LogHostFailed) and state.attempt_number >= HOST_FAILURE_ATTEMPTS


async def read_job_log(
    github: GitHubClient,
    repository: str,
    installation_id: int,
    job_id: int,
    new_builder: Callable[[], ExcerptBuilder],
    *,
    cap: int = LOG_SIZE_CAP,
    retry_base: float = 1.0,
) -> Excerpt:
    """Download one job's log and return its excerpt; raises when the log stays unavailable.

    The caller bounds the whole (REPORT_TIMEOUT); each download is bounded here."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(
            (LogsNotReady, SignedUrlRefused, GitHubUnavailable, LogHostFailed)
        ),
        # Logs usually appear within seconds of the job's end: about a minute in all. A host
        # that resets or cuts is given fewer tries: it is the verdict that waits.
        stop=_stop,
        wait=wait_exponential(multiplier=retry_base, max=20),
        reraise=True,
    ):
        with attempt:
            url = await github.job_log_url(repository, installation_id, job_id)
            # A fresh builder each attempt: a stream cut halfway must not leave half a log.
            builder = new_builder()
            await _stream(github.session, url, builder, cap)
            return await asyncio.to_thread(builder.finish)
    raise AssertionError("unreachable")
