"""Tokens looked up by digest behind a short cache, and the audit trail's writer."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache

from ghapp.core import audit as chain
from ghapp.core import scopes
from ghapp.core.scopes import ADMIN, Grant
from ghapp.store import SqlStore
from ghapp.store.base import StoreUnavailable

log = logging.getLogger("ghapp.access")
audit_log = logging.getLogger("ghapp.audit")
# A revoked or expired token is refused on every replica within 1 s: a replica trusts what it
# read for at most this long.
CACHE_SECONDS = 0.5
# How long a request waits for its audit row to be written before it answers anyway (the row
# is logged instead).
AUDIT_WAIT = 1.5
# "Last used" is written at most once a minute per token.
TOUCH_EVERY = 60.0


def grant_of(row: dict[str, Any]) -> Grant:
    """The Grant of a stored token row."""
    return Grant(
        row["name"],
        tuple(row["repositories"]),
        tuple(row["environments"]),
        frozenset(row["scopes"]),
        row["expires_at"],
    )


class TokenRegistry:
    """Which grant a presented bearer token carries: ORCHESTRATOR_TOKEN (admin) or a stored
    token, found by its digest."""

    def __init__(self, store: SqlStore, orchestrator_token: str | None) -> None:
        self.store = store
        self.orchestrator_token = (orchestrator_token or "").encode()
        self._cache: TTLCache[str, Grant | None] = TTLCache(maxsize=10_000, ttl=CACHE_SECONDS)
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def grant(self, token: str, now: float | None = None) -> Grant | None:
        """The token's grant, or None: unknown, revoked or expired."""
        if self.orchestrator_token and hmac.compare_digest(
            token.encode(), self.orchestrator_token
        ):
            return ADMIN
        if not scopes.TOKEN.fullmatch(token):
            return None
        now = time.time() if now is None else now
        # The digest is the lookup key, found by the database's index: equal digests of
        # different tokens cannot happen, so a timing difference tells nothing of a token.
        key = scopes.digest(token)
        try:
            grant = self._cache[key]
        except KeyError:
            row = await self.store.token_by_digest(key, now)
            grant = grant_of(row) if row is not None else None
            self._cache[key] = grant
        if grant is None or grant.expired(now):
            return None
        self._touch(grant.name, now)
        return grant

    def forget(self) -> None:
        """Drop what this process cached (after it revoked or rotated a token itself)."""
        self._cache.clear()

    def _touch(self, name: str, now: float) -> None:
        if now - self._touched.get(name, 0.0) < TOUCH_EVERY:
            return
        self._touched[name] = now
        task = asyncio.get_running_loop().create_task(self._write_touch(name, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, name: str, now: float) -> None:
        try:
            await self.store.touch_token(name, now)
        except Exception as exc:  # "last used" is a convenience: never a request's failure
            log.warning("could not note a token's last use", extra={"error": str(exc)})


def _bounded(value: str | None, most: int) -> Any:
    return value.replace("\x00", "\ufffd")[:most] if value is not None else None


class Auditor:
    """Appends audit rows (and logs each as one JSON line, which covers the newest row)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str | None,
        outcome: str,
        client: str | None = None,
        request_id: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any] | None:
        """Append one row; a database that is away loses the row (logged), not the request."""
        # Bounded, and without NUL (PostgreSQL text refuses it): a client's request id, a
        # path or a reason must not break the row.
        entry = {
            "actor": _bounded(actor, 200),
            "action": action,
            "target": _bounded(target, 300),
            "outcome": _bounded(outcome, 40),
            "client": _bounded(client, 100),
            "request_id": _bounded(request_id, 100),
            "reason": _bounded(reason, 2000),
        }
        try:
            # Bounded: a database that is away must not hold the answer past its 5 s.
            async with asyncio.timeout(AUDIT_WAIT):
                row = await self.store.append_audit(entry)
        except Exception as exc:
            if not StoreUnavailable.covers(exc):
                raise
            log.warning("audit row not stored", extra={"audit": json.dumps(entry)})
            return None
        audit_log.info("audit", extra={"audit": json.dumps(row, sort_keys=True)})
        return row


DAY = 86400.0


@dataclass
class Issued:
    """A token just made: its value (shown once) and what is stored of it."""

    token: str
    row: dict[str, Any]


async def issue_token(
    store: SqlStore,
    creator: Grant,
    *,
    name: str,
    repositories: list[str],
    environments: list[str],
    scope_names: list[str],
    expires_in_days: float | None,
    created_by: str,
    now: float | None = None,
) -> Issued:
    """Create a token within the creator's own grants (ValueError says why not;
    TokenNameTaken when the name is used)."""
    if not scopes.NAME.fullmatch(name) or name == scopes.ORCHESTRATOR:
        raise ValueError(f"name must match {scopes.NAME_PATTERN} and not be 'orchestrator'")
    why = scopes.check_grant(repositories, environments, scope_names)
    if why is not None:
        raise ValueError(why)
    if expires_in_days is not None and expires_in_days <= 0:
        raise ValueError("expires_in_days must be positive")
    now = time.time() if now is None else now
    expires_at = now + expires_in_days * DAY if expires_in_days is not None else None
    wanted = Grant(name, tuple(repositories), tuple(environments), frozenset(scope_names))
    if not scopes.within(creator, wanted):
        raise PermissionError("a token creates only tokens within its own grants")
    token = scopes.new_token()
    row = await store.create_token(
        name=name,
        digest=scopes.digest(token),
        prefix=token[:10],
        repositories=repositories,
        environments=environments,
        scopes=scope_names,
        expires_at=expires_at,
        created_by=created_by,
    )
    return Issued(token, row)


async def rotate_token(store: SqlStore, name: str, overlap_seconds: float) -> Issued | None:
    """A new value for a token, the old one valid `overlap_seconds` more; None: no token."""
    token = scopes.new_token()
    row = await store.rotate_token(
        name, scopes.digest(token), token[:10], time.time() + overlap_seconds
    )
    return Issued(token, row) if row is not None else None


def public_token(row: dict[str, Any]) -> dict[str, Any]:
    """A token as the API and the CLI show it (never its value)."""

    def iso(value: float | None) -> str | None:
        return datetime.fromtimestamp(value, UTC).isoformat() if value is not None else None

    return {
        "name": row["name"],
        "prefix": row["prefix"],
        "repositories": row["repositories"],
        "environments": row["environments"],
        "scopes": row["scopes"],
        "created_at": iso(row["created_at"]),
        "last_used_at": iso(row["last_used_at"]),
        "expires_at": iso(row["expires_at"]),
    }


async def verify_audit(store: SqlStore) -> chain.Broken | None:
    """The first row that breaks the audit chain, or None when it holds (the head's hash
    must be the newest row's too)."""
    base, head, rows = await store.audit_chain()
    broken = chain.verify(rows, start_hash=base)
    if broken is not None:
        return broken
    newest = rows[-1]["hash"] if rows else base
    if newest != head:
        last_id = int(rows[-1]["id"]) if rows else 0
        return chain.Broken(last_id, "the chain's head names a newer row (the newest row was "
                                     "removed) or an older one")
    return None
