"""The orchestrator's client: callback verification, and the API calls over real HTTP.

The HTTP tests run against `StandIn`, a small aiohttp app in this file that implements the
orchestrator API's contract (DESIGN.md) on 127.0.0.1. It is a stand-in, NOT ghapp's server: once
the real server exists these tests should target it instead (swap the `standin` fixture).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from ghapp.client import (
    CallbackVerificationError,
    Client,
    GhappError,
    sign_callback,
    verify_callback,
)
from ghapp.models import Deployment, DeploymentRequest, Verdict

SECRET = "callback-secret-for-tests"
TOKEN = "orchestrator-token-for-tests"


# ---------------------------------------------------------------------------------------------
# verify_callback


def _deployment_json(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "id": "dep_01",
        "repository": "acme/shop",
        "workflow": "deploy.yml",
        "ref": "main",
        "inputs": {},
        "state": "completed",
        "run": {
            "id": 123,
            "attempt": 1,
            "html_url": "https://github.com/acme/shop/actions/runs/123",
            "status": "completed",
            "conclusion": "success",
        },
        "verdict": {
            "status": "success",
            "reason": None,
            "summary": "deployed acme/shop@main",
            "deployed_url": "https://shop.example",
            "failed_jobs": [],
        },
        "callback": {"url": "https://orch.example/cb", "state": "pending", "attempts": 1},
        "created_at": now,
        "updated_at": now,
        "completed_at": now,
    }
    body.update(overrides)
    return body


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    # Computed here independently of ghapp.client, as the contract states it.
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Ghapp-Event": "deployment.completed",
        "X-Ghapp-Delivery": str(uuid.uuid4()),
        "X-Ghapp-Signature-256": f"sha256={digest}",
    }


BODY = json.dumps(_deployment_json()).encode()


def test_verify_accepts_a_correctly_signed_body() -> None:
    """A body signed with the secret comes back as the Deployment it holds."""
    deployment = verify_callback(BODY, _signed(BODY), SECRET)
    assert isinstance(deployment, Deployment)
    assert deployment.id == "dep_01"
    assert deployment.verdict is not None and deployment.verdict.status == "success"
    assert sign_callback(BODY, SECRET) == _signed(BODY)["X-Ghapp-Signature-256"]


def test_verify_header_names_are_case_insensitive() -> None:
    """Lower-case header names (as many frameworks hand them over) work too."""
    headers = {k.lower(): v for k, v in _signed(BODY).items()}
    assert verify_callback(BODY, headers, SECRET).id == "dep_01"


def test_verify_works_without_event_header() -> None:
    """X-Ghapp-Event is checked only when present."""
    headers = _signed(BODY)
    del headers["X-Ghapp-Event"]
    assert verify_callback(BODY, headers, SECRET).id == "dep_01"


def test_verify_rejects_a_tampered_body() -> None:
    """One changed byte and the signature no longer matches."""
    tampered = BODY.replace(b'"success"', b'"failure"', 1)
    with pytest.raises(CallbackVerificationError, match="does not match"):
        verify_callback(tampered, _signed(BODY), SECRET)


def test_verify_rejects_re_serialised_body() -> None:
    """The signature covers the exact bytes: a re-encoded equal JSON is refused."""
    reencoded = json.dumps(json.loads(BODY), indent=2).encode()
    with pytest.raises(CallbackVerificationError):
        verify_callback(reencoded, _signed(BODY), SECRET)


def test_verify_rejects_a_wrong_secret() -> None:
    """A body signed with another secret is refused."""
    with pytest.raises(CallbackVerificationError, match="does not match"):
        verify_callback(BODY, _signed(BODY, "another-secret"), SECRET)


def test_verify_rejects_a_missing_header() -> None:
    """No signature header, no trust."""
    headers = _signed(BODY)
    del headers["X-Ghapp-Signature-256"]
    with pytest.raises(CallbackVerificationError, match="missing"):
        verify_callback(BODY, headers, SECRET)


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda d: "sha1=" + hashlib.sha1(BODY).hexdigest(), id="sha1-prefix"),
        pytest.param(lambda d: "sha1=" + d, id="sha1-prefix-right-digest"),
        pytest.param(lambda d: "SHA256=" + d, id="uppercase-prefix"),
        # DESIGN.md fixes `sha256=<lowercase hex>`: upper-case hex is refused, not normalised.
        pytest.param(lambda d: "sha256=" + d.upper(), id="uppercase-hex"),
        pytest.param(lambda d: d, id="bare-hex"),
        pytest.param(lambda d: "sha256=" + d[:-2], id="short"),
        pytest.param(lambda d: "sha256=" + d + "00", id="long"),
        pytest.param(lambda d: "sha256=", id="empty"),
        pytest.param(lambda d: "sha256=" + "é" * 64, id="non-ascii"),
    ],
)
def test_verify_rejects_other_signature_formats(transform: Any) -> None:
    """Only `sha256=` followed by 64 lowercase hex digits is accepted."""
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    headers = _signed(BODY)
    headers["X-Ghapp-Signature-256"] = transform(digest)
    with pytest.raises(CallbackVerificationError):
        verify_callback(BODY, headers, SECRET)


def test_verify_rejects_another_event() -> None:
    """A signed body announced as another event is refused."""
    headers = _signed(BODY)
    headers["X-Ghapp-Event"] = "deployment.started"
    with pytest.raises(CallbackVerificationError, match="X-Ghapp-Event"):
        verify_callback(BODY, headers, SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b"[]",
        json.dumps({"id": "dep_01"}).encode(),
        json.dumps(_deployment_json(state="exploded")).encode(),
    ],
)
def test_verify_rejects_a_body_that_is_not_a_deployment(body: bytes) -> None:
    """A correctly signed body that is not a Deployment is still refused."""
    with pytest.raises(CallbackVerificationError, match="not a Deployment"):
        verify_callback(body, _signed(body), SECRET)


def test_verify_refuses_an_empty_secret() -> None:
    """An empty secret is a configuration error, not a check that passes."""
    with pytest.raises(ValueError):
        verify_callback(BODY, _signed(BODY, ""), "")


# ---------------------------------------------------------------------------------------------
# The stand-in server


def _error(status: int, error: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error, "message": message}
    if "errors" in extra:
        body["errors"] = extra.pop("errors")
    return web.json_response(body, status=status, **extra)


class StandIn:
    """Stand-in for ghapp's orchestrator API (not the real server), with faults on demand."""

    allowed_hosts = frozenset({"orch.example", "127.0.0.1"})

    def __init__(self) -> None:
        self.deployments: dict[str, Deployment] = {}
        self.idempotency: dict[str, tuple[dict[str, Any], str]] = {}
        self.cancel_requested: set[str] = set()
        self.unavailable = 0  # answer 503 to this many next POSTs
        self.retry_after = "0"
        self.post_keys: list[str | None] = []
        self.run_ids = iter(range(1000, 100000))
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_post("/api/v1/deployments", self.create)
        self.app.router.add_get("/api/v1/deployments", self.list)
        self.app.router.add_get("/api/v1/deployments/{id}", self.get)
        self.app.router.add_post("/api/v1/deployments/{id}/cancel", self.cancel)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error(401, "unauthorized", "missing or wrong bearer token")
        response: web.StreamResponse = await handler(request)
        return response

    async def create(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        self.post_keys.append(key)
        if self.unavailable > 0:
            self.unavailable -= 1
            return _error(
                503,
                "github_unavailable",
                "GitHub could not be reached; retry with the same Idempotency-Key",
                headers={"Retry-After": self.retry_after},
            )
        try:
            raw = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_json", "the body is not JSON")
        try:
            req = DeploymentRequest.model_validate(raw)
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False)
            ]
            return _error(422, "validation_failed", "the request is invalid", errors=errors)
        if req.callback_url and urlsplit(req.callback_url).hostname not in self.allowed_hosts:
            return _error(
                422,
                "callback_url_not_allowed",
                "callback_url is outside CALLBACK_ALLOWED_HOSTS",
                errors=[{"loc": ["callback_url"], "msg": "host not allowed"}],
            )
        canonical = req.model_dump()
        if key is not None and key in self.idempotency:
            seen_body, dep_id = self.idempotency[key]
            if seen_body != canonical:
                return _error(409, "idempotency_conflict", "key reused with another body")
            return web.json_response(self.deployments[dep_id].model_dump(mode="json"), status=200)
        now = datetime.now(UTC)
        run_id = next(self.run_ids)
        dep = Deployment.model_validate(
            {
                "id": f"dep_{uuid.uuid4().hex[:12]}",
                "repository": req.repository,
                "workflow": req.workflow,
                "ref": req.ref or "main",
                "inputs": req.inputs,
                "state": "dispatched",
                "run": {
                    "id": run_id,
                    "html_url": f"https://github.com/{req.repository}/actions/runs/{run_id}",
                    "status": "queued",
                },
                "callback": {"url": req.callback_url or "https://orch.example/cb"},
                "created_at": now,
                "updated_at": now,
            }
        )
        self.deployments[dep.id] = dep
        if key is not None:
            self.idempotency[key] = (canonical, dep.id)
        return web.json_response(dep.model_dump(mode="json"), status=202)

    def _advance(self, dep: Deployment) -> Deployment:
        """Each GET moves the run on one step: dispatched, in_progress, completed."""
        if dep.state == "completed" or dep.repository.endswith("/slow"):
            return dep
        now = datetime.now(UTC)
        run = dep.run.model_copy() if dep.run else None
        if dep.id in self.cancel_requested or dep.state == "in_progress":
            cancelled = dep.id in self.cancel_requested
            verdict: dict[str, Any] = (
                {"status": "failure", "reason": "cancelled", "summary": "the run was cancelled"}
                if cancelled
                else {
                    "status": "success",
                    "summary": "deployed",
                    "deployed_url": "https://shop.example",
                }
            )
            if run:
                run.status, run.conclusion = "completed", "cancelled" if cancelled else "success"
            new = dep.model_copy(
                update={
                    "state": "completed",
                    "run": run,
                    "verdict": Verdict.model_validate(verdict),
                    "updated_at": now,
                    "completed_at": now,
                }
            )
        else:
            if run:
                run.status = "in_progress"
            new = dep.model_copy(update={"state": "in_progress", "run": run, "updated_at": now})
        self.deployments[dep.id] = new
        return new

    async def get(self, request: web.Request) -> web.Response:
        dep = self.deployments.get(request.match_info["id"])
        if dep is None:
            return _error(404, "not_found", "no such deployment")
        return web.json_response(self._advance(dep).model_dump(mode="json"))

    async def list(self, request: web.Request) -> web.Response:
        deps = sorted(self.deployments.values(), key=lambda d: d.created_at, reverse=True)
        if repo := request.query.get("repository"):
            deps = [d for d in deps if d.repository == repo]
        if state := request.query.get("state"):
            deps = [d for d in deps if d.state == state]
        limit = int(request.query.get("limit", "50"))
        body = {"deployments": [d.model_dump(mode="json") for d in deps[:limit]]}
        return web.json_response(body)

    async def cancel(self, request: web.Request) -> web.Response:
        dep = self.deployments.get(request.match_info["id"])
        if dep is None:
            return _error(404, "not_found", "no such deployment")
        if dep.state != "completed":
            self.cancel_requested.add(dep.id)
        return web.json_response(dep.model_dump(mode="json"), status=202)


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    """The stand-in listening on 127.0.0.1; yields it and its base URL."""
    stand = StandIn()
    server = TestServer(stand.app, host="127.0.0.1")
    await server.start_server()
    try:
        yield stand, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


# ---------------------------------------------------------------------------------------------
# The client over HTTP


async def test_deploy_wait_get_list(standin: tuple[StandIn, str]) -> None:
    """The happy path: deploy answers dispatched, wait polls to completed, list finds it."""
    stand, url = standin
    async with Client(url, TOKEN) as client:
        dep = await client.deploy("acme/shop", inputs={"environment": "production"})
        assert dep.state == "dispatched"
        assert dep.run is not None and dep.run.id >= 1000
        assert dep.inputs == {"environment": "production"}
        assert dep.workflow == "deploy.yml" and dep.ref == "main"
        # The client made up an Idempotency-Key so that its own retries are safe.
        (key,) = stand.post_keys
        assert key is not None and uuid.UUID(key)

        done = await client.wait(dep.id, timeout=10, interval=0.01)
        assert done.state == "completed"
        assert done.verdict is not None
        assert done.verdict.status == "success"
        assert done.verdict.deployed_url == "https://shop.example"
        assert (await client.get(dep.id)).state == "completed"

        other = await client.deploy("acme/other", workflow="release.yaml", ref="v1.2")
        assert (other.workflow, other.ref) == ("release.yaml", "v1.2")
        assert [d.id for d in await client.list()] == [other.id, dep.id]
        assert [d.id for d in await client.list(repository="acme/shop")] == [dep.id]
        assert [d.id for d in await client.list(state="dispatched")] == [other.id]
        assert len(await client.list(limit=1)) == 1


async def test_usable_without_async_with(standin: tuple[StandIn, str]) -> None:
    """Calls open the session lazily; close() closes it."""
    _, url = standin
    client = Client(url, TOKEN)
    try:
        dep = await client.deploy("acme/shop")
        assert (await client.get(dep.id)).id == dep.id
    finally:
        await client.close()
    assert "TOKEN" not in repr(client) and TOKEN not in repr(client)


async def test_shared_session_is_left_open(standin: tuple[StandIn, str]) -> None:
    """A session passed in gets the token per request and is not closed by the client."""
    _, url = standin
    async with aiohttp.ClientSession() as session:
        async with Client(url, TOKEN, session=session) as client:
            await client.deploy("acme/shop")
        assert not session.closed


async def test_idempotency_key_given_by_caller(standin: tuple[StandIn, str]) -> None:
    """Same key and body: the same deployment; same key, other body: 409."""
    stand, url = standin
    async with Client(url, TOKEN) as client:
        first = await client.deploy("acme/shop", idempotency_key="key-1")
        again = await client.deploy("acme/shop", idempotency_key="key-1")
        assert again.id == first.id
        assert len(stand.deployments) == 1
        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop", ref="other", idempotency_key="key-1")
    assert info.value.status == 409
    assert info.value.error == "idempotency_conflict"


async def test_503_is_retried_honouring_retry_after(standin: tuple[StandIn, str]) -> None:
    """503 with Retry-After: the client waits that long, then retries with the same key."""
    stand, url = standin
    stand.unavailable, stand.retry_after = 1, "1"
    async with Client(url, TOKEN) as client:
        started = time.monotonic()
        dep = await client.deploy("acme/shop")
        elapsed = time.monotonic() - started
    assert dep.state == "dispatched"
    assert elapsed >= 0.9
    assert len(stand.post_keys) == 2
    assert stand.post_keys[0] == stand.post_keys[1]
    assert len(stand.deployments) == 1


async def test_retry_after_is_bounded(standin: tuple[StandIn, str]) -> None:
    """A huge Retry-After is capped by max_retry_wait; attempts are bounded by max_attempts."""
    stand, url = standin
    stand.unavailable, stand.retry_after = 2, "3600"
    async with Client(url, TOKEN, max_retry_wait=0.01) as client:
        started = time.monotonic()
        await client.deploy("acme/shop")
        assert time.monotonic() - started < 5

        stand.unavailable = 100
        stand.post_keys.clear()
        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop")
    assert info.value.status == 503
    assert info.value.error == "github_unavailable"
    assert "Idempotency-Key" in info.value.message
    assert len(stand.post_keys) == client.max_attempts == 4
    assert len(set(stand.post_keys)) == 1


async def test_validation_errors_are_reported(standin: tuple[StandIn, str]) -> None:
    """422 carries the field errors."""
    _, url = standin
    async with Client(url, TOKEN) as client:
        with pytest.raises(GhappError) as info:
            await client.deploy("no-slash-here")
        assert info.value.status == 422
        assert info.value.error == "validation_failed"
        assert info.value.errors
        assert info.value.errors[0]["loc"] == ["repository"]
        assert str(info.value).startswith("422 validation_failed: ")

        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop", callback_url="https://evil.example/cb")
        assert info.value.status == 422
        assert info.value.errors == [{"loc": ["callback_url"], "msg": "host not allowed"}]


async def test_wrong_token_is_401(standin: tuple[StandIn, str]) -> None:
    """A wrong bearer token surfaces as GhappError 401."""
    _, url = standin
    async with Client(url, "wrong-token") as client:
        with pytest.raises(GhappError) as info:
            await client.list()
    assert (info.value.status, info.value.error) == (401, "unauthorized")


async def test_unknown_deployment_is_404(standin: tuple[StandIn, str]) -> None:
    """An unknown id is a 404, and ids are path-quoted (no traversal to other routes)."""
    _, url = standin
    async with Client(url, TOKEN) as client:
        for bad in ("dep_nope", "../deployments", "a/cancel"):
            with pytest.raises(GhappError) as info:
                await client.get(bad)
            assert info.value.status == 404


async def test_cancel_then_the_verdict_follows(standin: tuple[StandIn, str]) -> None:
    """cancel() answers the deployment; the cancelled verdict arrives as usual."""
    _, url = standin
    async with Client(url, TOKEN) as client:
        dep = await client.deploy("acme/shop")
        answered = await client.cancel(dep.id)
        assert answered.id == dep.id
        done = await client.wait(dep.id, timeout=10, interval=0.01)
    assert done.verdict is not None
    assert (done.verdict.status, done.verdict.reason) == ("failure", "cancelled")


async def test_wait_times_out(standin: tuple[StandIn, str]) -> None:
    """wait() raises TimeoutError when the deployment does not complete in time."""
    _, url = standin
    async with Client(url, TOKEN) as client:
        dep = await client.deploy("acme/slow")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.wait(dep.id, timeout=0.3, interval=0.05)
        assert time.monotonic() - started < 3


async def test_connection_errors_are_retried_then_raised() -> None:
    """Nothing listening: bounded retries, then the connection error itself."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Client(f"http://127.0.0.1:{port}", TOKEN, max_retry_wait=0.01) as client:
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.get("dep_x")


async def test_non_json_error_body() -> None:
    """An error page that is not ghapp's JSON still becomes a GhappError."""

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="<html>Internal Server Error</html>")

    app = web.Application()
    app.router.add_get("/api/v1/deployments/{id}", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with Client(str(server.make_url("")), TOKEN) as client:
            with pytest.raises(GhappError) as info:
                await client.get("dep_x")
    finally:
        await server.close()
    assert (info.value.status, info.value.error) == (500, "http_500")
    assert "Internal Server Error" in info.value.message
