"""The orchestrator's Python client for ghapp's API, and verification of ghapp's callbacks.

async with Client("http://ghapp:3000", token) as client:
    dep = await client.deploy("acme/shop")
    dep = await client.wait(dep.id)

deployment = verify_callback(body, request.headers, CALLBACK_SECRET)
"""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from ghapp.core.models import (
    LENIENT,
    Cause,
    Deployment,
    DeploymentList,
    EnvironmentList,
    EnvironmentReleases,
    Release,
    ReleaseList,
    Verdict,
)
from ghapp.sse import EventParser

__all__ = [
    "CALLBACK_EVENT",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "STARTED_EVENT",
    "CallbackVerificationError",
    "Cause",
    "Client",
    "Deployment",
    "GhappError",
    "StreamUnavailable",
    "Verdict",
    "callback_event",
    "verify_callback",
]

SIGNATURE_HEADER = "X-Ghapp-Signature-256"
EVENT_HEADER = "X-Ghapp-Event"
CALLBACK_EVENT = "deployment.completed"
STARTED_EVENT = "deployment.started"
# DESIGN.md fixes `sha256=<lowercase hex>`; anything else (SHA256=, sha1=, upper-case hex) is
# refused rather than normalised, so a sender that drifts from the contract is noticed.
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
# Statuses worth another try: the server says it could not reach GitHub (503, nothing recorded)
# or a proxy in front of it had a moment.
_RETRY_STATUSES = frozenset({502, 503, 504})


class GhappError(Exception):
    """An error answer of the ghapp API: HTTP status, `error` code, `message`, field `errors`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        deployment_id: str | None = None,
    ) -> None:
        """Keep the parts of the error body; the text is `<status> <error>: <message>`.

        `deployment_id`: for error `conflict` (concurrency reject), the unfinished one."""
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors
        self.deployment_id = deployment_id


class StreamUnavailable(GhappError):
    """The server has no event stream (an older ghapp): poll instead."""


# The server sends a keep-alive at least every 15 s: a longer silence is a dead connection.
STREAM_READ_TIMEOUT = 45.0


class CallbackVerificationError(Exception):
    """A callback whose signature, event or body does not check out: do not act on it."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header `name` case-insensitively, from any mapping (plain dicts included)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def sign_callback(body: bytes, secret: str | bytes) -> str:
    """The `X-Ghapp-Signature-256` value for `body`: `sha256=<lowercase hex HMAC-SHA256>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    events: Collection[str] | None = None,
) -> Deployment:
    """Check a callback's signature (constant time) and event; return its Deployment.

    Any `X-Ghapp-Event` is accepted by default (`deployment.completed`, `deployment.started`,
    or one a newer server sends: see `callback_event`); `events` limits which."""
    if not secret:
        # An empty key would make every forged signature computable by anyone.
        raise ValueError("secret must not be empty")
    signature = _header(headers, SIGNATURE_HEADER)
    if signature is None:
        raise CallbackVerificationError(f"missing {SIGNATURE_HEADER} header")
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        # Only the format is revealed here, never anything about the expected value.
        raise CallbackVerificationError(
            f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 lowercase hex digits"
        )
    expected = sign_callback(body, secret)
    if not hmac.compare_digest(expected.encode(), ("sha256=" + match.group(1)).encode()):
        raise CallbackVerificationError("signature does not match the body")
    event = callback_event(headers)
    if events is not None and event not in events:
        raise CallbackVerificationError(f"unexpected {EVENT_HEADER} {event!r}")
    try:
        return Deployment.model_validate_json(body, context=LENIENT)
    except ValidationError as exc:
        raise CallbackVerificationError(f"body is not a Deployment: {exc}") from None


def callback_event(headers: Mapping[str, str]) -> str:
    """A callback's `X-Ghapp-Event` (`deployment.completed` when a sender omits it)."""
    event = _header(headers, EVENT_HEADER)
    return event.strip() if event is not None else CALLBACK_EVENT


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


class Client:
    """Async client of ghapp's orchestrator API (`/api/v1`), over one aiohttp session."""

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
            self._session = aiohttp.ClientSession(
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

    async def deploy(
        self,
        repository: str,
        *,
        workflow: str = "deploy.yml",
        ref: str | None = None,
        inputs: Mapping[str, str | int | float | bool] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_failure: str | None = None,
        concurrency: str | None = None,
    ) -> Deployment:
        """Ask ghapp to deploy `repository` (POST /api/v1/deployments); the new Deployment.

        `on_failure="rollback"` restores the environment's current release after a failure;
        `concurrency` is "queue" (default), "reject" (GhappError 409 `conflict` while another
        deployment of the environment is unfinished) or "cancel_previous"."""
        body: dict[str, Any] = {
            "repository": repository,
            "workflow": workflow,
            "inputs": dict(inputs or {}),
        }
        if ref is not None:
            body["ref"] = ref
        if callback_url is not None:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = dict(metadata)
        if on_failure is not None:
            body["on_failure"] = on_failure
        if concurrency is not None:
            body["concurrency"] = concurrency
        # One key for every retry of this call, so a retried POST never deploys twice.
        key = idempotency_key or str(uuid.uuid4())
        answer = await self._request(
            "POST", "/api/v1/deployments", body=body, headers={"Idempotency-Key": key}
        )
        return self._deployment(answer)

    async def report(self, deployment_id: str) -> str | None:
        """The failure report, Markdown (GET /api/v1/deployments/{id}/report); None if none."""
        path = f"/api/v1/deployments/{quote(deployment_id, safe='')}/report"
        try:
            _, text = await self._request("GET", path, raw=True)
        except GhappError as exc:
            if exc.status == 404 and exc.error == "no_report":
                return None
            raise
        return str(text)

    async def get(self, deployment_id: str) -> Deployment:
        """The Deployment `deployment_id` (GET /api/v1/deployments/{id})."""
        path = f"/api/v1/deployments/{quote(deployment_id, safe='')}"
        return self._deployment(await self._request("GET", path))

    async def list(
        self,
        *,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 50,
        metadata: Mapping[str, str] | None = None,
    ) -> builtins.list[Deployment]:
        """Deployments, newest first, optionally filtered (GET /api/v1/deployments)."""
        params = {"limit": str(limit)}
        for key, value in (metadata or {}).items():
            params[f"metadata.{key}"] = value
        if repository is not None:
            params["repository"] = repository
        if state is not None:
            params["state"] = state
        status, data = await self._request("GET", "/api/v1/deployments", params=params)
        try:
            return DeploymentList.model_validate(data, context=LENIENT).deployments
        except ValidationError as exc:
            raise GhappError(status, "invalid_response", f"not a deployment list: {exc}") from None

    async def cancel(self, deployment_id: str) -> Deployment:
        """Cancel the deployment's run (POST /api/v1/deployments/{id}/cancel)."""
        path = f"/api/v1/deployments/{quote(deployment_id, safe='')}/cancel"
        return self._deployment(await self._request("POST", path))

    @staticmethod
    def _environment_path(repository: str, environment: str | None = None) -> str:
        owner, _, name = repository.partition("/")
        path = f"/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}/environments"
        return path + (f"/{quote(environment, safe='')}" if environment is not None else "")

    async def environments(self, repository: str) -> builtins.list[EnvironmentReleases]:
        """Each environment of `repository` with its current and previous release."""
        status, data = await self._request("GET", self._environment_path(repository))
        try:
            return EnvironmentList.model_validate(data).environments
        except ValidationError as exc:
            message = f"not an environment list: {exc}"
            raise GhappError(status, "invalid_response", message) from None

    async def releases(
        self, repository: str, environment: str, *, limit: int = 20
    ) -> builtins.list[Release]:
        """The releases of `repository` in `environment`, newest first."""
        path = self._environment_path(repository, environment) + "/releases"
        status, data = await self._request("GET", path, params={"limit": str(limit)})
        try:
            return ReleaseList.model_validate(data).releases
        except ValidationError as exc:
            raise GhappError(status, "invalid_response", f"not a release list: {exc}") from None

    async def rollback(
        self,
        repository: str,
        environment: str,
        *,
        to: str | None = None,
        callback_url: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """Deploy an earlier release again: `to` (a deployment id), or the one before the
        current; the rollback Deployment. GhappError 409 `no_release` when there is none."""
        body: dict[str, Any] = {"to": to}
        if callback_url is not None:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = dict(metadata)
        key = idempotency_key or str(uuid.uuid4())
        path = self._environment_path(repository, environment) + "/rollback"
        answer = await self._request("POST", path, body=body, headers={"Idempotency-Key": key})
        return self._deployment(answer)

    async def stats(
        self,
        *,
        repository: str | None = None,
        environment: str | None = None,
        days: int = 30,
    ) -> dict[str, Any]:
        """GET /api/v1/stats: `{"since", "stats": [...]}` as DESIGN.md defines it."""
        params = {"days": str(days)}
        if repository is not None:
            params["repository"] = repository
        if environment is not None:
            params["environment"] = environment
        status, data = await self._request("GET", "/api/v1/stats", params=params)
        if not isinstance(data, dict) or not isinstance(data.get("stats"), builtins.list):
            raise GhappError(status, "invalid_response", "not a stats answer")
        return data


    async def events(
        self, deployment_id: str, *, reconnect_wait: float = 1.0, max_failures: int = 5
    ) -> AsyncIterator[Deployment]:
        """The deployment as it changes (its event stream), snapshot first, until `completed`.

        A dropped connection is reopened with `Last-Event-ID` (the server then sends a
        snapshot, so nothing is missed); `max_failures` failed connections in a row raise.
        StreamUnavailable when the server has no stream; GhappError for 401, 404 and the like.
        """
        session = self._get_session()
        url = f"{self.base_url}/api/v1/deployments/{quote(deployment_id, safe='')}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=STREAM_READ_TIMEOUT)
        last_id: str | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if not self._owns_session:
                headers["Authorization"] = f"Bearer {self._token}"
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                async with session.get(url, headers=headers, timeout=timeout) as response:
                    await self._check_stream(response)
                    failures = 0
                    parser = EventParser()
                    async for chunk in response.content.iter_any():
                        for event in parser.feed(chunk):
                            last_id = parser.last_id
                            try:
                                deployment = Deployment.model_validate_json(
                                    event.data, context=LENIENT
                                )
                            except ValidationError:
                                continue  # an event this client does not know
                            yield deployment
                            if deployment.state == "completed":
                                return
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                failures += 1
                if failures >= max_failures:
                    raise
            # The stream ended without the verdict (the server restarting): follow it again.
            await asyncio.sleep(min(reconnect_wait * 2 ** max(failures - 1, 0), 15.0))

    async def _check_stream(self, response: aiohttp.ClientResponse) -> None:
        if response.status == 200 and response.content_type == "text/event-stream":
            return
        text = (await response.read()).decode("utf-8", "replace")
        if response.status in (404, 405) and not text.lstrip().startswith("{"):
            raise StreamUnavailable(response.status, "no_stream", "the server has no event stream")
        if response.status == 200:
            raise StreamUnavailable(200, "no_stream", f"not an event stream: {text[:100]!r}")
        self._decode(response.status, text)
        raise GhappError(response.status, "invalid_response", text[:200])

    # The contract names the parameter `timeout`: it bounds the wait, not one await.
    async def wait(
        self,
        deployment_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 2.0,
    ) -> Deployment:
        """Follow the deployment until `completed` (its event stream, else polling every
        `interval` s); TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        latest: Deployment | None = None
        try:
            async with asyncio.timeout(timeout):
                async for latest in self.events(deployment_id):
                    if latest.state == "completed":
                        return latest
        except StreamUnavailable:
            pass
        except TimeoutError:
            state = latest.state if latest is not None else "unknown"
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"deployment {deployment_id} still {state} after {timeout:g}s"
                ) from None
            raise
        while True:
            deployment = await self.get(deployment_id)
            if deployment.state == "completed":
                return deployment
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"deployment {deployment_id} still {deployment.state} after {timeout:g}s"
                )
            await asyncio.sleep(min(interval, remaining))
