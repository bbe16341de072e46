"""Checking a callback from ghapp on the orchestrator's side: its signature and its event.

deployment = verify_callback(body, request.headers, CALLBACK_SECRET)
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping

from pydantic import ValidationError

from ghapp.core.enums import LENIENT
from ghapp.core.models import Deployment
from ghapp.core.signing import header, sign_sha256

SIGNATURE_HEADER = "X-Ghapp-Signature-256"
EVENT_HEADER = "X-Ghapp-Event"
CALLBACK_EVENT = "deployment.completed"
STARTED_EVENT = "deployment.started"
# The contract (docs/reference/callbacks.md): `sha256=<hex>`; SHA256=, sha1=, upper-case hex are
# refused rather than normalised, so a sender that drifts from the contract is noticed.
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")


class CallbackVerificationError(Exception):
    """A callback whose signature, event or body does not check out: do not act on it."""


def sign_callback(body: bytes, secret: str | bytes) -> str:
    """The `X-Ghapp-Signature-256` value for `body`: `sha256=<lowercase hex HMAC-SHA256>`."""
    return sign_sha256(secret, body)


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
    signature = header(headers, SIGNATURE_HEADER)
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
    event = header(headers, EVENT_HEADER)
    return event.strip() if event is not None else CALLBACK_EVENT
