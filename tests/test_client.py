"""The orchestrator's client: callback verification, and the API calls over real HTTP.

The HTTP tests run against the real ghapp on loopback (ghapp.simulator.stack.Stack), with the GitHub
simulator behind it; only the non-JSON error page comes from a small aiohttp app, as a proxy
in front of ghapp would answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ghapp.client import (
    CallbackVerificationError,
    Client,
    GhappError,
    callback_event,
    sign_callback,
    verify_callback,
)
from ghapp.core.models import Deployment
from ghapp.simulator.stack import Stack

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
    # Computed here independently of ghapp.client, as the contract states it: both families.
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    delivery, sent = str(uuid.uuid4()), int(time.time())
    signed = f"{delivery}.{sent}.".encode() + body
    standard = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    return {
        "X-Ghapp-Event": "deployment.completed",
        "X-Ghapp-Delivery": delivery,
        "X-Ghapp-Signature-256": f"sha256={digest}",
        "webhook-id": delivery,
        "webhook-timestamp": str(sent),
        "webhook-signature": "v1," + standard.decode(),
    }


BODY = json.dumps(_deployment_json()).encode()


def test_verify_accepts_a_correctly_signed_body() -> None:
    """A body signed with the secret comes back as the Deployment it holds."""
    deployment = verify_callback(BODY, _signed(BODY), SECRET)
    assert isinstance(deployment, Deployment)
    assert deployment.id == "dep_01"
    assert deployment.verdict is not None and deployment.verdict.status == "success"
    assert sign_callback(BODY, SECRET) == _signed(BODY)["X-Ghapp-Signature-256"]


def test_verify_keeps_enum_values_a_newer_server_may_send() -> None:
    """A cause category or reason this version does not know is kept, not refused."""
    body = json.dumps(
        _deployment_json(
            verdict={
                "status": "failure",
                "reason": "quota_exceeded",
                "summary": "out of minutes",
                "failed_jobs": [],
                "cause": {
                    "category": "billing",
                    "retryable": False,
                    "rule": "github.minutes",
                    "hint": "Buy minutes.",
                    "evidence": None,
                },
                "report": "# Deploy of acme/shop@main to production failed\n",
            }
        )
    ).encode()
    deployment = verify_callback(body, _signed(body), SECRET)
    assert deployment.verdict is not None and deployment.verdict.cause is not None
    assert deployment.verdict.cause.category == "billing"
    assert deployment.verdict.reason == "quota_exceeded"
    assert deployment.verdict.report is not None
    # The server itself still refuses what it does not know.
    with pytest.raises(ValueError):
        Deployment.model_validate_json(body)


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
        # docs/reference/callbacks.md: `sha256=<lowercase hex>`; upper-case is refused as is.
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


def test_verify_accepts_other_events_unless_told_which() -> None:
    """`deployment.started` (and events a newer server sends) verify; `events` limits them."""
    headers = _signed(BODY)
    headers["X-Ghapp-Event"] = "deployment.started"
    assert verify_callback(BODY, headers, SECRET).id
    assert callback_event(headers) == "deployment.started"
    with pytest.raises(CallbackVerificationError, match="X-Ghapp-Event"):
        verify_callback(BODY, headers, SECRET, events={"deployment.completed"})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b"[]",
        json.dumps({"id": "dep_01"}).encode(),
        json.dumps(_deployment_json(state=42)).encode(),
    ],
)
def test_verify_rejects_a_body_that_is_not_a_deployment(body: bytes) -> None:
    """A correctly signed body that is not a Deployment is still refused."""
    with pytest.raises(CallbackVerificationError, match="not a Deployment"):
        verify_callback(body, _signed(body), SECRET)


def test_verify_accepts_enum_values_it_does_not_know() -> None:
    """The contract: a newer server may send states, reasons or kinds this client never heard of."""
    verdict = {"status": "failure", "reason": "quantum_flux", "summary": "-", "failed_jobs": []}
    body = json.dumps(
        _deployment_json(state="paused", kind="canary", verdict=verdict, rollback_of=None)
    ).encode()
    deployment = verify_callback(body, _signed(body), SECRET)
    assert deployment.state == "paused" and deployment.kind == "canary"
    assert deployment.verdict is not None and deployment.verdict.reason == "quantum_flux"


def test_verify_refuses_an_empty_secret() -> None:
    """An empty secret is a configuration error, not a check that passes."""
    with pytest.raises(ValueError):
        verify_callback(BODY, _signed(BODY, ""), "")


# ---------------------------------------------------------------------------------------------
# The client over HTTP, against the real ghapp (with the simulator and a callback receiver)


def client_for(stack: Stack, **options: Any) -> Client:
    return Client(stack.base_url, stack.settings.orchestrator_token or "", **options)


async def test_deploy_wait_get_list(stack: Stack) -> None:
    """The happy path: deploy answers dispatched, wait polls to completed, list finds it."""
    async with client_for(stack) as client:
        dep = await client.deploy("acme/shop", inputs={"environment": "production"})
        assert dep.state == "dispatched"
        assert dep.run is not None and dep.run.id > 0
        assert dep.inputs == {"environment": "production"}
        assert dep.workflow == "deploy.yml" and dep.ref == "main"
        done = await client.wait(dep.id, timeout=20, interval=0.05)
        assert done.state == "completed"
        assert done.verdict is not None
        assert done.verdict.status == "success"
        assert done.verdict.deployed_url == "https://shop.example.com"
        assert (await client.get(dep.id)).state == "completed"
        other = await client.deploy("acme/api", ref="main")
        assert [d.id for d in await client.list()] == [other.id, dep.id]
        assert [d.id for d in await client.list(repository="acme/shop")] == [dep.id]
        assert len(await client.list(limit=1)) == 1
        failed = await client.wait(other.id, timeout=20, interval=0.05)
        assert failed.verdict is not None and failed.verdict.reason == "failure"
        assert failed.verdict.cause is not None
        assert failed.verdict.cause.category == "infrastructure"
        report = await client.report(other.id)
        assert report is not None and report == failed.verdict.report
        assert report.startswith("# Deploy of `acme/api@main`")
        assert await client.report(dep.id) is None
        assert [d.id for d in await client.list(state="completed")] == [other.id, dep.id]


async def test_usable_without_async_with(stack: Stack) -> None:
    """Calls open the session lazily; close() closes it; repr hides the token."""
    client = client_for(stack)
    try:
        dep = await client.deploy("acme/shop")
        assert (await client.get(dep.id)).id == dep.id
    finally:
        await client.close()
    assert (stack.settings.orchestrator_token or "") not in repr(client)


async def test_shared_session_is_left_open(stack: Stack) -> None:
    """A session passed in gets the token per request and is not closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with client_for(stack, session=session) as client:
            await client.deploy("acme/shop")
        assert not session.closed


async def test_idempotency_key_given_by_caller(stack: Stack) -> None:
    """Same key and body: the same deployment; same key, other body: 409."""
    async with client_for(stack) as client:
        first = await client.deploy("acme/shop", idempotency_key="key-1")
        again = await client.deploy("acme/shop", idempotency_key="key-1")
        assert again.id == first.id
        assert len(stack.sim.runs) == 1
        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop", ref="other", idempotency_key="key-1")
    assert info.value.status == 409
    assert info.value.error == "idempotency_conflict"


async def test_503_is_retried_with_the_same_key(stack: Stack) -> None:
    """GitHub down for ghapp's first try: 503 + Retry-After, the client waits and retries."""
    # ghapp retries GitHub itself 5 times before answering 503; the 6th request succeeds.
    stack.sim.faults.server_errors = 5
    async with client_for(stack, max_retry_wait=0.3) as client:
        started = time.monotonic()
        dep = await client.deploy("acme/shop")
        elapsed = time.monotonic() - started
    assert dep.state == "dispatched"
    assert elapsed >= 0.25  # Retry-After 30, capped at max_retry_wait
    assert len(stack.sim.runs) == 1
    _, listing = await stack.get("/api/v1/deployments")
    assert [d["id"] for d in listing["deployments"]] == [dep.id]


async def test_retries_are_bounded(stack: Stack) -> None:
    """GitHub down for good: max_attempts tries, then GhappError 503."""
    stack.sim.faults.server_errors = 10_000
    async with client_for(stack, max_retry_wait=0.01) as client:
        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop")
    assert info.value.status == 503
    assert info.value.error == "github_unavailable"
    assert stack.sim.runs == {}


async def test_validation_errors_are_reported(stack: Stack) -> None:
    """422 carries the field errors."""
    async with client_for(stack) as client:
        with pytest.raises(GhappError) as info:
            await client.deploy("no-slash-here")
        assert info.value.status == 422
        assert info.value.error == "invalid_request"
        assert info.value.errors and info.value.errors[0]["field"] == "repository"
        assert str(info.value).startswith("422 invalid_request: ")
        with pytest.raises(GhappError) as info:
            await client.deploy("acme/shop", callback_url="https://evil.example/cb")
        assert info.value.status == 422
        assert info.value.errors == [{"field": "callback_url", "message": "host not allowed"}]


async def test_wrong_token_is_401(stack: Stack) -> None:
    """A wrong bearer token surfaces as GhappError 401."""
    async with Client(stack.base_url, "wrong-token") as client:
        with pytest.raises(GhappError) as info:
            await client.list()
    assert (info.value.status, info.value.error) == (401, "unauthorized")


async def test_unknown_deployment_is_404(stack: Stack) -> None:
    """An unknown id is a 404, and ids are path-quoted (no traversal to other routes)."""
    async with client_for(stack) as client:
        for bad in ("dep_nope", "../deployments", "a/cancel"):
            with pytest.raises(GhappError) as info:
                await client.get(bad)
            # Starlette decodes %2F before routing: "a/cancel" meets the cancel route's 405,
            # never a handler that would act on it.
            assert info.value.status in (404, 405)


async def test_cancel_then_the_verdict_follows(stack: Stack) -> None:
    """cancel() answers the deployment; the cancelled verdict arrives as usual."""
    stack.sim.auto = False
    async with client_for(stack) as client:
        dep = await client.deploy("acme/shop")
        assert dep.run is not None
        await stack.sim.advance(dep.run.id)
        answered = await client.cancel(dep.id)
        assert answered.id == dep.id
        done = await client.wait(dep.id, timeout=20, interval=0.05)
    assert done.verdict is not None
    assert (done.verdict.status, done.verdict.reason) == ("failure", "cancelled")


async def test_wait_times_out(stack: Stack) -> None:
    """wait() raises TimeoutError when the deployment does not complete in time."""
    stack.sim.auto = False
    async with client_for(stack) as client:
        dep = await client.deploy("acme/shop")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.wait(dep.id, timeout=0.3, interval=0.05)
        assert time.monotonic() - started < 3


async def test_verify_callback_accepts_what_ghapp_sends(stack: Stack) -> None:
    """The orchestrator's side: a real callback from ghapp verifies and parses."""
    async with client_for(stack) as client:
        dep = await client.deploy("acme/api")
    callback = await stack.receiver.wait_for(dep.id)
    deployment = verify_callback(callback.body, callback.headers, stack.receiver.secret)
    assert deployment.id == dep.id
    assert deployment.verdict is not None and deployment.verdict.status == "failure"
    with pytest.raises(CallbackVerificationError):
        verify_callback(callback.body, callback.headers, "another-secret")


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
