"""Operator page sessions: signed cookies, ended on the server by signing out; sign-in throttling.

A session cookie is `payload.signature` (HMAC-SHA256 with a key derived from ORCHESTRATOR_TOKEN)
carrying its id, expiry and CSRF token. Signing out records the id in `revoked_sessions` (shared
by every replica) until the cookie would have expired, so a copied cookie stops working too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachetools import TTLCache
from sqlalchemy import delete, insert, select

from ghapp.store.schema import revoked_sessions

if TYPE_CHECKING:
    from ghapp.config import Settings
    from ghapp.store import SqlStore

SESSION_COOKIE = "ghapp_session"
SESSION_SECONDS = 12 * 3600
# Sign-in: at most this many failed attempts per client address per window, per process.
SIGN_IN_FAILURES = 10
SIGN_IN_WINDOW = 60.0
# Addresses remembered at once: a bound on the throttle's memory under a spread-out attack.
SIGN_IN_ADDRESSES = 10_000


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its id, when its cookie expires, and its CSRF token."""

    expires: int
    csrf: str
    id: str = ""
    # Who signed in, as the audit trail names them (`token:NAME`).
    actor: str = ""


def _key(settings: Settings) -> bytes:
    # Derived from the token, so changing ORCHESTRATOR_TOKEN ends every session.
    token = (settings.orchestrator_token or "").encode()
    return hmac.new(token, b"ghapp operator session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_session_cookie(
    settings: Settings, *, now: float | None = None, actor: str = ""
) -> tuple[str, Session]:
    """A new session and its cookie value (`payload.signature`, HMAC-SHA256)."""
    session = Session(
        expires=int((now or time.time()) + SESSION_SECONDS),
        csrf=secrets.token_urlsafe(24),
        id=secrets.token_urlsafe(18),
        actor=actor,
    )
    data = {"exp": session.expires, "csrf": session.csrf, "sid": session.id, "sub": actor}
    payload = _b64(json.dumps(data).encode())
    signature = _b64(hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", session


def read_session_cookie(
    settings: Settings, value: str | None, *, now: float | None = None
) -> Session | None:
    """The session a cookie carries, if its signature holds and it has not expired.

    Whether it was signed out is the database's to say: see `session_revoked`.
    """
    if not value or not settings.orchestrator_token or len(value) > 1024:
        return None
    payload, _, signature = value.partition(".")
    expected = _b64(hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    try:
        data = json.loads(_unb64(payload))
        session = Session(
            expires=int(data["exp"]),
            csrf=str(data["csrf"]),
            id=str(data.get("sid", "")),
            actor=str(data.get("sub", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > (now or time.time()) else None


async def revoke_session(store: SqlStore, session: Session) -> None:
    """End a session for every replica; expired revocations are cleared on the way."""
    if not session.id:
        return
    async with store.begin() as conn:
        expired = revoked_sessions.c.expires_at < time.time()
        await conn.execute(delete(revoked_sessions).where(expired))
        exists = await conn.execute(
            select(revoked_sessions.c.id).where(revoked_sessions.c.id == session.id)
        )
        if exists.first() is None:
            await conn.execute(
                insert(revoked_sessions).values(id=session.id, expires_at=float(session.expires))
            )


async def session_revoked(store: SqlStore, session: Session) -> bool:
    """Whether this session was signed out (a session without an id predates revocation)."""
    if not session.id:
        # Cookies from before sessions had ids cannot be revoked one by one: refuse them.
        return True
    async with store.reader.connect() as conn:
        found = await conn.execute(
            select(revoked_sessions.c.id).where(revoked_sessions.c.id == session.id)
        )
        return found.first() is not None


class SignInThrottle:
    """Failed sign-ins per client address in a sliding window (this process only)."""

    def __init__(
        self,
        *,
        limit: int = SIGN_IN_FAILURES,
        window: float = SIGN_IN_WINDOW,
        addresses: int = SIGN_IN_ADDRESSES,
    ) -> None:
        self.limit = limit
        self.window = window
        self._failures: TTLCache[str, deque[float]] = TTLCache(maxsize=addresses, ttl=window)

    def retry_after(self, address: str, *, now: float | None = None) -> int | None:
        """Seconds to wait when `address` used up its attempts in the window, else None."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, address: str, *, now: float | None = None) -> None:
        """Count one failed attempt."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(address)
        if failures is None:
            failures = deque(maxlen=self.limit)
        failures.append(now)
        # Stored again, so the address stays remembered for a window after its latest failure.
        self._failures[address] = failures
