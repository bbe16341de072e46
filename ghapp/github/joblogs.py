"""Job logs: follow GitHub's redirect to the signed URL without the token, stream the body."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ghapp.github.client import USER_AGENT, GitHubClient, GitHubUnavailable, LogsNotReady
from ghapp.github.logexcerpt import Excerpt, ExcerptBuilder

if TYPE_CHECKING:
    import aiohttp

# Logs past this are cut: the excerpt needs the failing step, not an endless stream.
LOG_SIZE_CAP = 512 * 1024 * 1024
CHUNK_SIZE = 256 * 1024


class SignedUrlRefused(Exception):
    """The log host refused the signed URL (it expires after about a minute)."""


async def _stream(
    session: aiohttp.ClientSession, url: str, builder: ExcerptBuilder, cap: int
) -> int:
    # A plain request: no Authorization header ever goes to the log host.
    async with session.get(url, headers={"User-Agent": USER_AGENT}) as response:
        if response.status in (400, 401, 403, 404, 410):
            raise SignedUrlRefused(f"the log host answered {response.status}")
        if response.status >= 500:
            raise GitHubUnavailable(f"the log host answered {response.status}")
        if response.status != 200:
            raise SignedUrlRefused(f"the log host answered {response.status}")
        read = 0
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            builder.feed(chunk[: cap - read])
            read += len(chunk)
            if read >= cap:
                break
        return read


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
    """Download one job's log and return its excerpt; raises when the log stays unavailable."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((LogsNotReady, SignedUrlRefused, GitHubUnavailable)),
        # Logs usually appear within seconds of the job's end: about a minute in all.
        stop=stop_after_attempt(7),
        wait=wait_exponential(multiplier=retry_base, max=20),
        reraise=True,
    ):
        with attempt:
            url = await github.job_log_url(repository, installation_id, job_id)
            # A fresh builder each attempt: a stream cut halfway must not leave half a log.
            builder = new_builder()
            await _stream(github.session, url, builder, cap)
            return builder.finish()
    raise AssertionError("unreachable")
