"""gidgethub's aiohttp client with the retries GitHub's docs ask for.

Apart from `client.py` so that aiohttp (~8 MiB resident) is loaded at the first GitHub call,
not by an idle server."""

from __future__ import annotations

import time
from collections.abc import Mapping

import aiohttp
import gidgethub
import gidgethub.aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ghapp import keepalive
from ghapp.github import inflight
from ghapp.github.errors import describe, origin_of
from ghapp.github.retry import backoff, is_rate_limited, rate_limit_wait

# What a failed exchange with GitHub raises, besides TimeoutError.
ClientError = aiohttp.ClientError
# Failures that mean a request never left: no connection was made.
NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class GitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's client with the retries GitHub's docs ask for."""

    max_attempts = 5
    retry_base = 1.0

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        watch = inflight.current.get()
        if watch is not None:
            watch.last_error = describe(exception, origin_of(url))
        if attempt >= self.max_attempts:
            return False
        status = int(exception.status_code)
        if is_rate_limited(status, exception.headers, str(exception)):
            await self.sleep(rate_limit_wait(exception.headers, time.time()))
            return True
        if status >= 500:
            if method == "POST" and url.endswith("/dispatches"):
                # GitHub may have created the run before failing: sending the dispatch again
                # could deploy twice. The caller records it as in doubt instead.
                return False
            await self.sleep(backoff(attempt, base=self.retry_base, cap=30.0))
            return True
        return False

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        watch = inflight.current.get()
        dispatch_watch = watch if method == "POST" and url.endswith("/dispatches") else None
        retryable: tuple[type[BaseException], ...]
        if method == "GET":
            retryable = (aiohttp.ClientConnectionError, TimeoutError, aiohttp.ClientPayloadError)
        else:
            # Only a failure to connect means the request never arrived: then even a POST may
            # be sent again. Any later failure may hide a request GitHub acted on.
            retryable = NOT_CONNECTED
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.retry_base, max=30.0, jitter=self.retry_base
            ),
            reraise=True,
        ):
            with attempt:
                if dispatch_watch is not None:
                    dispatch_watch.starting()
                try:
                    answer = await self._send(method, url, headers, body, dispatch_watch)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if watch is not None:
                        watch.last_error = describe(exc, origin_of(url))
                    if dispatch_watch is not None and isinstance(exc, NOT_CONNECTED):
                        dispatch_watch.not_connected()
                    raise
                if dispatch_watch is not None:
                    dispatch_watch.answered(answer[0])
                self.observe(method, url, answer[0], answer[1])
                return answer
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        watch: inflight.DispatchWatch | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        # gidgethub's own request, with the watch handed to the session's trace; sent once more
        # if GitHub closed the idle connection before any of it was written (ghapp.keepalive).
        async with keepalive.request(
            self._session, method, url, headers=headers, data=body, trace_request_ctx=watch
        ) as response:
            return response.status, response.headers, await response.read()

    def observe(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Called with every answer (the client counts them); replaced per instance."""
