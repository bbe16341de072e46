"""Signatures: `sha256=<hex>` (GitHub's webhooks, `X-Ghapp-Signature-256`), the Standard
Webhooks headers of callbacks, and the case-insensitive header lookup that finds them.

One place for both sides: the server signs with `callback_headers`, the orchestrator's side
(`ghapp.client.verify_callback`) checks with `check_signature` and `check_standard`. Pure: the
time is an argument. How a receiver verifies is described in docs/callback-signatures.md.

Standard Webhooks (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix
seconds) and `webhook-signature`, `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`,
several space-separated during a key rotation. The key is the secret's UTF-8 bytes, or for a
secret written `whsec_<base64>` the decoded bytes, as Standard Webhooks libraries read it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

SIGNATURE_HEADER = "X-Ghapp-Signature-256"
DELIVERY_HEADER = "X-Ghapp-Delivery"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
# How far a callback's timestamp may be from the receiver's clock, either way (seconds).
TOLERANCE = 5 * 60
WHSEC_PREFIX = "whsec_"
# `sha256=<lowercase hex>`; anything else (SHA256=, sha1=, upper-case hex) is refused rather
# than normalised, so a sender that drifts from the contract is noticed.
_HUB_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """A signature, or the headers that carry it, does not check out."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Header `name` case-insensitively, from any mapping (plain dicts included)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, found in headers.items():
        if key.lower() == wanted:
            return found
    return None


def _bytes(secret: str | bytes) -> bytes:
    if not secret:
        # An empty key would make every forged signature computable by anyone.
        raise ValueError("secret must not be empty")
    return secret.encode() if isinstance(secret, str) else secret


def hub_signature(body: bytes, secret: str | bytes) -> str:
    """The `X-Ghapp-Signature-256` value: `sha256=<lowercase hex HMAC-SHA256>` of the body with
    the secret as written (a `whsec_` secret included)."""
    return "sha256=" + hmac.new(_bytes(secret), body, hashlib.sha256).hexdigest()


def standard_key(secret: str | bytes) -> bytes:
    """The Standard Webhooks key: the secret's bytes, or `whsec_<base64>` decoded."""
    if isinstance(secret, str) and secret.startswith(WHSEC_PREFIX):
        try:
            key = base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a secret written whsec_... must be base64 after the prefix") from None
        if not key:
            raise ValueError("secret must not be empty")
        return key
    return _bytes(secret)


def standard_signature(message_id: str, timestamp: int, body: bytes, secret: str | bytes) -> str:
    """One `webhook-signature` entry: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def callback_headers(
    body: bytes, delivery_id: str, timestamp: int, secrets: Sequence[str | bytes]
) -> dict[str, str]:
    """The signature headers of one callback attempt; with several secrets (a rotation, the
    new one first) each header holds every signature."""
    if not secrets:
        raise ValueError("at least one secret is needed")
    return {
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: ",".join(hub_signature(body, secret) for secret in secrets),
        WEBHOOK_ID: delivery_id,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: " ".join(
            standard_signature(delivery_id, timestamp, body, secret) for secret in secrets
        ),
    }


def check_signature(body: bytes, headers: Mapping[str, str], secret: str | bytes) -> None:
    """`X-Ghapp-Signature-256` matches the body (constant time), or SignatureError."""
    given = header(headers, SIGNATURE_HEADER)
    if given is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    expected = hub_signature(body, secret).encode()
    matched = False
    for entry in given.split(","):
        found = _HUB_SIGNATURE.fullmatch(entry.strip())
        if found is None:
            # Only the format is revealed here, never anything about the expected value.
            raise SignatureError(
                f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 lowercase hex digits"
            )
        matched |= hmac.compare_digest(expected, ("sha256=" + found.group(1)).encode())
    if not matched:
        raise SignatureError("signature does not match the body")


def check_standard(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """The Standard Webhooks headers are there, sign this body, and the timestamp is within
    `tolerance` seconds of `now` either way; else SignatureError."""
    message_id = header(headers, WEBHOOK_ID)
    timestamp = header(headers, WEBHOOK_TIMESTAMP)
    signatures = header(headers, WEBHOOK_SIGNATURE)
    missing = [
        name
        for name, value in (
            (WEBHOOK_ID, message_id),
            (WEBHOOK_TIMESTAMP, timestamp),
            (WEBHOOK_SIGNATURE, signatures),
        )
        if not value
    ]
    if missing or message_id is None or timestamp is None or signatures is None:
        raise SignatureError(
            f"missing {', '.join(missing)} header{'s' if len(missing) > 1 else ''} "
            "(a callback from a ghapp older than the third round has none: "
            "verify it with require_timestamp=False)"
        )
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise SignatureError(f"{WEBHOOK_TIMESTAMP} must be Unix seconds")
    sent = int(timestamp.strip())
    if sent < now - tolerance:
        raise SignatureError(f"{WEBHOOK_TIMESTAMP} is more than {tolerance:g} s old: a replay?")
    if sent > now + tolerance:
        raise SignatureError(f"{WEBHOOK_TIMESTAMP} is more than {tolerance:g} s in the future")
    delivery = header(headers, DELIVERY_HEADER)
    if delivery is not None and delivery.strip() != message_id.strip():
        raise SignatureError(f"{WEBHOOK_ID} differs from {DELIVERY_HEADER}")
    expected = standard_signature(message_id.strip(), sent, body, secret).encode()
    if not any(
        hmac.compare_digest(expected, entry.encode()) for entry in signatures.split(" ") if entry
    ):
        raise SignatureError(f"{WEBHOOK_SIGNATURE} does not match the body")
