"""The orchestrator client's HTTP session: the bearer token, bounded retries, error answers."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from pydantic import ValidationError

from ghapp import keepalive
from ghapp.client._errors import GhappError
from ghapp.core.enums import LENIENT
from ghapp.core.models import Deployment

# Statuses worth another try: the server says it could not reach GitHub (503, nothing recorded)
# or a proxy in front of it had a moment.
_RETRY_STATUSES = frozenset({502, 503, 504})


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ApiSession:
    """The session under `Client`: opened lazily, authorised, retried; answers decoded."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        max_retry_wait: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Talk to ghapp at `base_url` with bearer `token`; retries are bounded by the knobs."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_attempts = max(1, max_attempts)
        self.max_retry_wait = max_retry_wait
        self._session = session
        # A caller's session is the caller's to close.
        self._owns_session = session is None

    def __repr__(self) -> str:
        """Show where the client points, never its token."""
        return f"Client({self.base_url!r})"

    async def __aenter__(self) -> Self:
        """Open the session."""
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the session."""
        await self.close()

    async def close(self) -> None:
        """Close the session this client opened (a session passed in is left open)."""
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily, inside a running loop, as aiohttp requires.
        if self._session is None:
            # Safe from a server closing an idle connection under a request (ghapp.keepalive).
            self._session = keepalive.session(
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
            self._owns_session = True
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bool = False,
    ) -> tuple[int, Any]:
        """Send one API call, retrying 502/503/504 and lost connections; status and JSON.

        With `raw`, a 2xx answer's body is returned as text (the Markdown report).
        """
        session = self._get_session()
        send_headers = dict(headers or {})
        if not self._owns_session:
            # A shared session does not carry our token by default.
            send_headers["Authorization"] = f"Bearer {self._token}"
        url = self.base_url + path
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                async with session.request(
                    method, url, json=body, params=params, headers=send_headers
                ) as response:
                    # Decoded leniently: an error page in a stray charset must not hide the status.
                    text = (await response.read()).decode("utf-8", "replace")
                    if response.status in _RETRY_STATUSES and not last:
                        await asyncio.sleep(self._delay(attempt, response.headers))
                        continue
                    if raw and 200 <= response.status < 300:
                        return response.status, text
                    return response.status, self._decode(response.status, text)
            except (aiohttp.ClientConnectionError, TimeoutError):
                # Safe to repeat: reads are reads, and deploy carries an Idempotency-Key.
                if last:
                    raise
                await asyncio.sleep(self._delay(attempt, None))
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def _delay(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        """Retry-After when the server gives one, else exponential backoff; capped either way."""
        wait = _retry_after(headers.get("Retry-After")) if headers is not None else None
        if wait is None:
            wait = 0.5 * 2 ** (attempt - 1)
        return min(wait, self.max_retry_wait)

    @staticmethod
    def _decode(status: int, text: str) -> Any:
        """The JSON of a 2xx answer; a GhappError for anything else."""
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = None
        if 200 <= status < 300:
            if data is None:
                raise GhappError(status, "invalid_response", f"not JSON: {text[:200]!r}")
            return data
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            errors = data.get("errors")
            raise GhappError(
                status,
                data["error"],
                str(data.get("message", "")),
                errors if isinstance(errors, list) else None,
                data["deployment_id"] if isinstance(data.get("deployment_id"), str) else None,
            )
        raise GhappError(status, f"http_{status}", text[:500])

    @staticmethod
    def _deployment(answer: tuple[int, Any]) -> Deployment:
        status, data = answer
        try:
            # Lenient: a cause category or reason this version does not know stays a string.
            return Deployment.model_validate(data, context=LENIENT)
        except ValidationError as exc:
            raise GhappError(status, "invalid_response", f"not a Deployment: {exc}") from None
