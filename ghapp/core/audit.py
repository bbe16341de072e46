"""The audit trail's rows and their hash chain (docs/access.md, "The audit trail"). Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The closed list of actions a row may record.
ACTIONS = (
    "deployment.create",
    "deployment.cancel",
    "deployment.callback_resend",
    "rollback.create",
    "token.create",
    "token.rotate",
    "token.revoke",
    "gate.decide",
    "gate.approve",
    "gate.reject",
    "delivery.redeliver",
    "deploy_key.create",
    "signin",
    "signin.failed",
    "signout",
    "audit.pruned",
)
GENESIS = "0" * 64
# The fields a row's hash covers, besides `previous_hash` (everything but `hash`).
FIELDS = (
    "id",
    "at",
    "actor",
    "action",
    "target",
    "outcome",
    "client",
    "request_id",
    "reason",
    "previous_hash",
)


def canonical(row: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of a row of strings, integers and nulls (sorted keys, no
    spaces, UTF-8): JCS and sorted `json.dumps` agree on such values."""
    return json.dumps(
        {name: row.get(name) for name in FIELDS}, sort_keys=True, separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def chain_hash(previous_hash: str, row: Mapping[str, Any]) -> str:
    """SHA-256(previous hash || canonical JSON of the row without its hash), hex."""
    return hashlib.sha256(previous_hash.encode() + canonical(row)).hexdigest()


def sealed(row: Mapping[str, Any], previous_hash: str) -> dict[str, Any]:
    """The row with its `previous_hash` and `hash` set."""
    out = {name: row.get(name) for name in FIELDS}
    out["previous_hash"] = previous_hash
    out["hash"] = chain_hash(previous_hash, out)
    return out


@dataclass(frozen=True)
class Broken:
    """Where the chain breaks: the row's id and why."""

    row_id: int
    why: str


def verify(rows: Iterable[Mapping[str, Any]], start_hash: str = GENESIS) -> Broken | None:
    """The first row (oldest first) that breaks the chain, or None when it holds.

    `start_hash` is what the first row must follow: zeros, or after pruning the hash of the
    last row pruned. An edited row fails its own hash; a removed row leaves the next one
    pointing at a hash that is not its predecessor's."""
    expected = start_hash
    for row in rows:
        row_id = int(row["id"])
        if row.get("previous_hash") != expected:
            return Broken(row_id, "its previous_hash is not the hash of the row before it "
                                  "(a row before it was removed or edited)")
        if chain_hash(expected, row) != row.get("hash"):
            return Broken(row_id, "its hash does not match its content (the row was edited)")
        expected = str(row["hash"])
    return None
