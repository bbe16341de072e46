"""The orchestrator's Python client for ghapp's API, and verification of ghapp's callbacks.

async with Client("http://ghapp:3000", token) as client:
    dep = await client.deploy("acme/shop")
    dep = await client.wait(dep.id)

deployment = verify_callback(body, request.headers, CALLBACK_SECRET)
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from ghapp.client._callbacks import (
    CALLBACK_EVENT,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    STARTED_EVENT,
    CallbackVerificationError,
    callback_event,
    check_callback_signature,
    sign_callback,
    sign_callback_headers,
    verify_callback,
)
from ghapp.client._errors import GhappError, StreamUnavailable
from ghapp.client._session import ApiSession
from ghapp.client._sse import EventParser
from ghapp.core.enums import LENIENT
from ghapp.core.models import (
    Cause,
    Deployment,
    DeploymentList,
    EnvironmentList,
    EnvironmentReleases,
    Release,
    ReleaseList,
    Verdict,
)

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
    "check_callback_signature",
    "sign_callback",
    "sign_callback_headers",
    "verify_callback",
]

# The server sends a keep-alive at least every 15 s: a longer silence is a dead connection.
STREAM_READ_TIMEOUT = 45.0


class Client(ApiSession):
    """Async client of ghapp's orchestrator API (`/api/v1`), over one aiohttp session."""

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
        outputs: Sequence[str] | None = None,
        traceparent: str | None = None,
    ) -> Deployment:
        """Ask ghapp to deploy `repository` (POST /api/v1/deployments); the new Deployment.

        `on_failure="rollback"` restores the environment's current release after a failure;
        `concurrency` is "queue" (default), "reject" (GhappError 409 `conflict` while another
        deployment of the environment is unfinished) or "cancel_previous"; `outputs` names the
        run's outputs wanted in `verdict.outputs`; `traceparent` (W3C) makes the deployment's
        trace a child of the caller's span."""
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
        if outputs:
            body["outputs"] = list(outputs)
        # One key for every retry of this call, so a retried POST never deploys twice.
        key = idempotency_key or str(uuid.uuid4())
        headers = {"Idempotency-Key": key}
        if traceparent:
            headers["traceparent"] = traceparent
        answer = await self._request("POST", "/api/v1/deployments", body=body, headers=headers)
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
        """Deployments, newest first, optionally filtered (GET /api/v1/deployments; at most 5
        `metadata` pairs, else GhappError 422)."""
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
        """GET /api/v1/stats: `{"since", "stats": [...]}` (docs/reference/http-api.md)."""
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
        StreamUnavailable when the server has no stream (or has MAX_STREAMS open already);
        GhappError for 401, 404 and the like.
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
        if response.status == 503 and '"too_many_streams"' in text:
            # The process serves MAX_STREAMS streams already: `wait` polls instead.
            raise StreamUnavailable(503, "too_many_streams", "the server's streams are all taken")
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
