"""Callbacks that resist replay: the Standard Webhooks headers, verified from outside ghapp.

A real `ghapp serve` process sends its callbacks to the stand-in orchestrator; they are checked
with `standardwebhooks` (a Standard Webhooks library from PyPI, not ghapp's code) and with
`ghapp.client.verify_callback`. Six minutes later (a clock the test moves: time-machine, no
sleeping) both refuse the same callback. The rules are in docs/callback-signatures.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ghapp.cli.demo import demo_workflows
from ghapp.client import (
    CallbackVerificationError,
    sign_callback,
    sign_callback_headers,
    verify_callback,
)
from ghapp.core.signatures import callback_headers, standard_key
from ghapp.simulator.receiver import ReceivedCallback
from ghapp.simulator.stack import ProcessServer, Stack, app_key

WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def served(tmp_path: Path, secret: str | None) -> tuple[Stack, ProcessServer]:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    await stack.stop_ghapp()  # ghapp runs as a real process instead
    if secret is not None:
        stack.receiver.secret = secret
        stack.settings = stack.settings.model_copy(update={"callback_secret": secret})
    server = ProcessServer(stack.settings, str(tmp_path / "serve.log"))
    stack.base_url = await server.start()
    stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
    return stack, server


@pytest.fixture(params=["plain", "whsec"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The simulator, the stand-in and `ghapp serve`; CALLBACK_SECRET plain or `whsec_`."""
    stack, server = await served(tmp_path, WHSEC if request.param == "whsec" else None)
    try:
        yield stack
    finally:
        await server.stop()
        await stack.close()


def library_for(secret: str) -> Webhook:
    """The Standard Webhooks verifier, keyed as its documentation says for this secret."""
    return Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())


async def callbacks_of(stack: Stack, repository: str) -> list[ReceivedCallback]:
    status, body = await stack.deploy(repository, notify=["deployment.started"])
    assert status == 202, body
    completed = await stack.receiver.wait_for(body["id"])
    started = await stack.receiver.wait_for(body["id"], event="deployment.started")
    return [started, completed]


async def test_a_standard_webhooks_library_verifies_a_callback_and_refuses_it_later(
    stack: Stack,
) -> None:
    secret = stack.settings.callback_secret or ""
    library = library_for(secret)
    for callback in [
        *await callbacks_of(stack, "acme/shop"),
        *await callbacks_of(stack, "acme/api"),
    ]:
        headers = callback.headers
        sent = int(headers["webhook-timestamp"])
        # This attempt's time, the delivery's id, and both signature families.
        assert abs(sent - callback.arrived_at) < 5
        assert headers["webhook-id"] == headers["X-Ghapp-Delivery"]
        assert headers["webhook-signature"].startswith("v1,")
        # X-Ghapp-Signature-256 always uses the secret as written (a whsec_ one too).
        expected = hmac.new(secret.encode(), callback.body, hashlib.sha256).hexdigest()
        assert headers["X-Ghapp-Signature-256"] == "sha256=" + expected
        assert library.verify(callback.body, headers)["id"] == callback.deployment["id"]
        assert verify_callback(callback.body, headers, secret).id == callback.deployment["id"]
        # Six minutes later, a replay of the very same bytes and headers is refused by both.
        with time_machine.travel(datetime.fromtimestamp(sent, UTC) + timedelta(minutes=6)):
            with pytest.raises(WebhookVerificationError, match="too old"):
                library.verify(callback.body, headers)
            with pytest.raises(CallbackVerificationError, match="old"):
                verify_callback(callback.body, headers, secret)
            # require_timestamp=False (for older servers) still checks the headers that are
            # there; only a callback without them passes on its body signature alone.
            with pytest.raises(CallbackVerificationError, match="old"):
                verify_callback(callback.body, headers, secret, require_timestamp=False)
            bare = {k: v for k, v in headers.items() if not k.lower().startswith("webhook-")}
            assert verify_callback(callback.body, bare, secret, require_timestamp=False)
    events = sorted({c.event for c in stack.receiver.received})
    assert events == ["deployment.completed", "deployment.started"]


# -- verify_callback on its own -------------------------------------------------------------

SECRET = "callback-secret-for-tests"
BODY = json.dumps(
    {
        "id": "dep_01",
        "repository": "acme/shop",
        "workflow": "deploy.yml",
        "ref": "main",
        "inputs": {},
        "state": "completed",
        "run": None,
        "verdict": {
            "status": "success",
            "reason": None,
            "summary": "deployed",
            "deployed_url": None,
            "failed_jobs": [],
        },
        "callback": {"url": "https://orch.example/cb", "state": "pending", "attempts": 1},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:00Z",
    }
).encode()


def test_the_window_is_five_minutes_either_way() -> None:
    now = time.time()
    headers = sign_callback_headers(BODY, SECRET, timestamp=int(now))
    assert verify_callback(BODY, headers, SECRET, now=now + 299).id == "dep_01"
    assert verify_callback(BODY, headers, SECRET, now=now - 299).id == "dep_01"
    with pytest.raises(CallbackVerificationError, match="old"):
        verify_callback(BODY, headers, SECRET, now=now + 301)
    with pytest.raises(CallbackVerificationError, match="future"):
        verify_callback(BODY, headers, SECRET, now=now - 301)


def test_a_replay_under_a_new_delivery_id_is_refused() -> None:
    """The attack of the audit: a captured callback sent again with a new X-Ghapp-Delivery."""
    headers = sign_callback_headers(BODY, SECRET)
    replayed = {**headers, "X-Ghapp-Delivery": "another-delivery"}
    with pytest.raises(CallbackVerificationError, match="webhook-id"):
        verify_callback(BODY, replayed, SECRET)
    # And with webhook-id changed too, its signature no longer matches.
    replayed["webhook-id"] = "another-delivery"
    with pytest.raises(CallbackVerificationError, match="does not match"):
        verify_callback(BODY, replayed, SECRET)
    # A new timestamp does not sign either.
    later = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)}
    with pytest.raises(CallbackVerificationError, match="does not match"):
        verify_callback(BODY, later, SECRET)


def test_callbacks_of_older_servers_need_require_timestamp_false() -> None:
    """An older ghapp sends X-Ghapp-Signature-256 alone: refused by default, accepted when told."""
    headers = {
        "X-Ghapp-Event": "deployment.completed",
        "X-Ghapp-Delivery": "d-1",
        "X-Ghapp-Signature-256": sign_callback(BODY, SECRET),
    }
    with pytest.raises(CallbackVerificationError, match="require_timestamp=False"):
        verify_callback(BODY, headers, SECRET)
    assert verify_callback(BODY, headers, SECRET, require_timestamp=False).id == "dep_01"
    # Its signature is still checked.
    with pytest.raises(CallbackVerificationError, match="does not match"):
        verify_callback(BODY + b" ", headers, SECRET, require_timestamp=False)
    # Partial Standard Webhooks headers are not "absent": they are checked, and refused.
    partial = {**headers, "webhook-id": "d-1"}
    with pytest.raises(CallbackVerificationError, match="missing"):
        verify_callback(BODY, partial, SECRET, require_timestamp=False)


def test_signatures_interoperate_with_the_library_and_carry_a_rotation() -> None:
    """What the library signs, ghapp verifies (whsec_ key), and the reverse; during a
    rotation each header holds both signatures and either secret verifies."""
    library = Webhook(WHSEC)
    sent = datetime.now(UTC)
    delivery = "msg_1"
    headers = {
        "X-Ghapp-Delivery": delivery,
        "X-Ghapp-Signature-256": sign_callback(BODY, WHSEC),
        "webhook-id": delivery,
        "webhook-timestamp": str(int(sent.timestamp())),
        "webhook-signature": library.sign(delivery, sent, BODY),
    }
    assert verify_callback(BODY, headers, WHSEC).id == "dep_01"
    assert standard_key(WHSEC) == base64.b64decode(WHSEC.removeprefix("whsec_"))
    previous = "previous-callback-secret"
    rotated = callback_headers(BODY, delivery, int(sent.timestamp()), [WHSEC, previous])
    assert len(rotated["webhook-signature"].split(" ")) == 2
    assert len(rotated["X-Ghapp-Signature-256"].split(",")) == 2
    assert library.verify(BODY, rotated)["id"] == "dep_01"
    assert Webhook(previous.encode()).verify(BODY, rotated)["id"] == "dep_01"
    for secret in (WHSEC, previous):
        assert verify_callback(BODY, rotated, secret).id == "dep_01"
    with pytest.raises(CallbackVerificationError):
        verify_callback(BODY, rotated, "a-third-secret-not-used")


def test_a_whsec_secret_that_is_not_base64_stops_start_up() -> None:
    from ghapp.config import Settings, SettingsError

    settings = Settings(
        _env_file=None,
        app_id="1",
        private_key=app_key(),
        webhook_secret=["w" * 20],
        orchestrator_token="t" * 20,
        callback_secret="whsec_not base64!!",
    )
    with pytest.raises(SettingsError, match="CALLBACK_SECRET: a secret written whsec_"):
        settings.require_for_serve()
    # The same for the previous secret of a rotation; a good pair starts.
    good = settings.model_copy(update={"callback_secret": WHSEC})
    good.require_for_serve()
    rotating = good.model_copy(update={"callback_secret_previous": "whsec_!!"})
    with pytest.raises(SettingsError, match="CALLBACK_SECRET_PREVIOUS"):
        rotating.require_for_serve()


async def test_during_a_rotation_callbacks_carry_both_signatures(tmp_path: Path) -> None:
    previous = "previous-callback-secret-0123"
    stack = await Stack.start(
        f"sqlite:///{tmp_path / 'ghapp.db'}", callback_secret_previous=previous
    )
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        _, body = await stack.deploy("acme/shop")
        callback = await stack.receiver.wait_for(body["id"])
        assert callback.signature_ok  # the stand-in knows the new secret only
        headers = callback.headers
        assert len(headers["X-Ghapp-Signature-256"].split(",")) == 2
        assert len(headers["webhook-signature"].split(" ")) == 2
        for secret in (stack.receiver.secret, previous):
            assert verify_callback(callback.body, headers, secret).id == body["id"]
            assert Webhook(secret.encode()).verify(callback.body, headers)["id"] == body["id"]
    finally:
        await stack.close()
