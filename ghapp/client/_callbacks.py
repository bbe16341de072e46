"""Checking a callback from ghapp on the orchestrator's side: its signatures and its event.

deployment = verify_callback(body, request.headers, CALLBACK_SECRET)

Every callback carries `X-Ghapp-Signature-256` and the Standard Webhooks headers
(`webhook-id`, `webhook-timestamp`, `webhook-signature`); `verify_callback` checks both, and
that the timestamp is within 5 minutes of now, so a captured callback cannot be replayed later.
docs/callback-signatures.md says how to verify in another language.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping

from pydantic import ValidationError

from ghapp.core.enums import LENIENT
from ghapp.core.models import Deployment
from ghapp.core.signatures import (
    SIGNATURE_HEADER,
    TOLERANCE,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    SignatureError,
    callback_headers,
    check_signature,
    check_standard,
    header,
    hub_signature,
)

__all__ = [
    "CALLBACK_EVENT",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "STARTED_EVENT",
    "CallbackVerificationError",
    "callback_event",
    "check_callback_signature",
    "sign_callback",
    "sign_callback_headers",
    "verify_callback",
]

EVENT_HEADER = "X-Ghapp-Event"
CALLBACK_EVENT = "deployment.completed"
STARTED_EVENT = "deployment.started"


class CallbackVerificationError(Exception):
    """A callback whose signature, time, event or body does not check out: do not act on it."""


def sign_callback(body: bytes, secret: str | bytes) -> str:
    """The `X-Ghapp-Signature-256` value for `body`: `sha256=<lowercase hex HMAC-SHA256>`."""
    return hub_signature(body, secret)


def sign_callback_headers(
    body: bytes,
    secret: str | bytes,
    *,
    event: str = CALLBACK_EVENT,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Every header ghapp signs a callback with, for `body`, as of now (or `timestamp`): what
    an orchestrator's tests need to fake a callback that `verify_callback` accepts."""
    delivery = delivery_id or str(uuid.uuid4())
    sent = int(time.time()) if timestamp is None else timestamp
    return {EVENT_HEADER: event, **callback_headers(body, delivery, sent, [secret])}


def check_callback_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    require_timestamp: bool = True,
    now: float | None = None,
) -> None:
    """Check a callback's signatures (constant time) and its time; CallbackVerificationError.

    `X-Ghapp-Signature-256` must match. The Standard Webhooks headers must be there, match,
    and carry a `webhook-timestamp` within 5 minutes of `now` (default: this machine's clock)
    either way. With `require_timestamp=False` a callback without them (from a ghapp older than
    the third round) is accepted; when they are there they are checked all the same."""
    if not secret:
        # An empty key would make every forged signature computable by anyone.
        raise ValueError("secret must not be empty")
    try:
        check_signature(body, headers, secret)
        has_standard = any(
            header(headers, name) for name in (WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)
        )
        if require_timestamp or has_standard:
            clock = time.time() if now is None else now
            check_standard(body, headers, secret, now=clock, tolerance=TOLERANCE)
    except SignatureError as exc:
        raise CallbackVerificationError(str(exc)) from None


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    events: Collection[str] | None = None,
    require_timestamp: bool = True,
    now: float | None = None,
) -> Deployment:
    """Check a callback's signatures, time and event; return its Deployment.

    See `check_callback_signature` for the signatures and `require_timestamp`. Any
    `X-Ghapp-Event` is accepted by default (`deployment.completed`, `deployment.started`, or
    one a newer server sends: see `callback_event`); `events` limits which."""
    check_callback_signature(body, headers, secret, require_timestamp=require_timestamp, now=now)
    event = callback_event(headers)
    if events is not None and event not in events:
        raise CallbackVerificationError(f"unexpected {EVENT_HEADER} {event!r}")
    try:
        return Deployment.model_validate_json(body, context=LENIENT)
    except ValidationError as exc:
        raise CallbackVerificationError(f"body is not a Deployment: {exc}") from None


def callback_event(headers: Mapping[str, str]) -> str:
    """A callback's `X-Ghapp-Event` (`deployment.completed` when a sender omits it)."""
    event = header(headers, EVENT_HEADER)
    return event.strip() if event is not None else CALLBACK_EVENT
