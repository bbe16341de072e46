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

from ghapp.github.retry import backoff, is_rate_limited, rate_limit_wait

# What a failed exchange with GitHub raises, besides TimeoutError.
ClientError = aiohttp.ClientError


class GitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's client with the retries GitHub's docs ask for."""

    max_attempts = 5
    retry_base = 1.0

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        if attempt >= self.max_attempts:
            return False
        status = int(exception.status_code)
        if is_rate_limited(status, exception.headers, str(exception)):
            await self.sleep(rate_limit_wait(exception.headers, time.time()))
            return True
        if status >= 500:
            await self.sleep(backoff(attempt, base=self.retry_base, cap=30.0))
            return True
        return False

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        # Connection failures mean the request never arrived, so even a POST may be sent again.
        retryable: tuple[type[BaseException], ...] = (aiohttp.ClientConnectionError,)
        if method == "GET":
            retryable += (TimeoutError, aiohttp.ClientPayloadError)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.retry_base, max=30.0, jitter=self.retry_base
            ),
            reraise=True,
        ):
            with attempt:
                answer = await super()._request(method, url, headers, body)
                self.observe(method, url, answer[0], answer[1])
                return answer
        raise AssertionError("unreachable")

    def observe(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Called with every answer (the client counts them); replaced per instance."""
