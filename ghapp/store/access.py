"""Tokens (stored as digests) and the audit trail (one hash chain across replicas) in SQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ghapp.core import audit as chain
from ghapp.store.base import StoreBase
from ghapp.store.schema import audit, audit_head, tokens

AUDIT_FIELDS = (*chain.FIELDS, "hash")


class TokenNameTaken(Exception):
    """A token of that name exists."""


def _token_row(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "prefix": row.prefix,
        "repositories": json.loads(row.repositories),
        "environments": json.loads(row.environments),
        "scopes": json.loads(row.scopes),
        "created_at": row.created_at,
        "created_by": row.created_by,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }


def _audit_row(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in AUDIT_FIELDS}


class Access(StoreBase):
    """Tokens and the audit trail."""

    async def create_token(
        self,
        *,
        name: str,
        digest: str,
        prefix: str,
        repositories: list[str],
        environments: list[str],
        scopes: list[str],
        expires_at: float | None,
        created_by: str | None,
    ) -> dict[str, Any]:
        """Store a new token (its digest only); TokenNameTaken when the name is in use."""
        values = {
            "name": name,
            "digest": digest,
            "prefix": prefix,
            "repositories": json.dumps(repositories),
            "environments": json.dumps(environments),
            "scopes": json.dumps(scopes),
            "created_at": time.time(),
            "created_by": created_by,
            "expires_at": expires_at,
        }
        try:
            async with self.begin() as conn:
                await conn.execute(insert(tokens).values(**values))
        except IntegrityError:
            raise TokenNameTaken(name) from None
        return {**_token_row(_Row(values)), "last_used_at": None}

    async def token_by_digest(self, digest: str, now: float) -> dict[str, Any] | None:
        """The token whose value has this digest (or whose rotated-out value still overlaps)."""
        query = select(tokens).where(
            or_(
                tokens.c.digest == digest,
                (tokens.c.previous_digest == digest) & (tokens.c.previous_until > now),
            )
        )
        async with self.reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return _token_row(row) if row is not None else None

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every token, by name (no values: there are none to show)."""
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(tokens).order_by(tokens.c.name))).all()
        return [_token_row(row) for row in rows]

    async def revoke_token(self, name: str) -> bool:
        """Delete a token; False when there was none of that name."""
        async with self.begin() as conn:
            gone = await conn.execute(delete(tokens).where(tokens.c.name == name))
        return bool(gone.rowcount)

    async def rotate_token(
        self, name: str, digest: str, prefix: str, overlap_until: float
    ) -> dict[str, Any] | None:
        """Give a token a new value, the old one valid until `overlap_until`; None: no token."""
        async with self.begin() as conn:
            row = (await conn.execute(select(tokens).where(tokens.c.name == name))).first()
            if row is None:
                return None
            await conn.execute(
                update(tokens)
                .where(tokens.c.name == name)
                .values(
                    digest=digest,
                    prefix=prefix,
                    previous_digest=row.digest,
                    previous_until=overlap_until,
                )
            )
        return _token_row(row)

    async def touch_token(self, name: str, now: float) -> None:
        """Note when a token was last used."""
        async with self.begin() as conn:
            await conn.execute(
                update(tokens).where(tokens.c.name == name).values(last_used_at=now)
            )

    async def append_audit(self, entry: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Append one row to the chain; writers from every replica take turns on its head."""
        now = time.time() if now is None else now
        async with self.begin() as conn:
            return await self._append(conn, entry, now)

    async def _append(self, conn: Any, entry: dict[str, Any], now: float) -> dict[str, Any]:
        # A write first: it takes the head row's lock (PostgreSQL) or the write lock
        # (SQLite, waiting its busy timeout) before the head is read, so that two writers
        # never both extend the same head.
        await conn.execute(
            update(audit_head).where(audit_head.c.id == 1).values(last_id=audit_head.c.last_id)
        )
        head = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).one()
        at = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        row = chain.sealed(
            {**entry, "id": int(head.last_id) + 1, "at": at.replace("+00:00", "Z")},
            head.last_hash,
        )
        await conn.execute(insert(audit).values(**row, created_at=now))
        await conn.execute(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(last_id=row["id"], last_hash=row["hash"])
        )
        return row

    async def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Rows newest first, optionally by actor, action, or since a time."""
        query = select(audit)
        if actor:
            query = query.where(audit.c.actor == actor)
        if action:
            query = query.where(audit.c.action == action)
        if since is not None:
            query = query.where(audit.c.created_at >= since)
        query = query.order_by(audit.c.id.desc()).limit(limit)
        async with self.reader.connect() as conn:
            return [_audit_row(row) for row in (await conn.execute(query)).all()]

    async def audit_chain(self) -> tuple[str, str, list[dict[str, Any]]]:
        """(the hash the oldest row follows, the head's hash, every row oldest first)."""
        async with self.reader.connect() as conn:
            head = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).one()
            rows = (await conn.execute(select(audit).order_by(audit.c.id))).all()
        return head.base_hash, head.last_hash, [_audit_row(row) for row in rows]

    async def prune_audit(self, before: float) -> int:
        """Remove rows older than `before`, keeping the chain verifiable from the new first
        row (the head remembers the hash it follows), and record it as `audit.pruned`."""
        async with self.begin() as conn:
            await conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(last_id=audit_head.c.last_id)
            )
            last = (
                await conn.execute(
                    select(audit.c.id, audit.c.hash)
                    .where(audit.c.created_at < before)
                    .order_by(audit.c.id.desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                return 0
            gone = await conn.execute(delete(audit).where(audit.c.id <= last.id))
            await conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(base_hash=last.hash)
            )
            await self._append(
                conn,
                {
                    "actor": "ghapp",
                    "action": "audit.pruned",
                    "target": f"rows up to {last.id}",
                    "outcome": "ok",
                    "reason": f"{gone.rowcount} rows older than the retention",
                },
                time.time(),
            )
            return int(gone.rowcount)


class _Row:
    """A values dict read like a result row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
        self.__dict__.setdefault("last_used_at", None)
