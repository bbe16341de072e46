"""The `sha256=<hex>` signature GitHub's webhooks and ghapp's callbacks carry, and the
case-insensitive header lookup that finds it: one of each for the server, the client,
the simulator and the command line."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign_sha256(secret: str | bytes, body: bytes) -> str:
    """`sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Header `name` whatever its case, from any mapping (plain dicts included)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
