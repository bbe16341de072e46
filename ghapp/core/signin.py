"""Sign in with GitHub (PAGE_AUTH=github): PKCE, the `state` value and its check, the role a
person's team memberships give them, the recheck rule, and GITHUB_URL's default. Pure: no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Role = Literal["reader", "admin", "refused"]
# Membership is checked at sign-in and again this often (seconds); a module constant so a test
# can shorten it.
RECHECK_SECONDS = 600
# How long a started sign-in (its `state` and PKCE verifier) stays valid.
STATE_SECONDS = 600
CALLBACK_PATH = "/auth/github/callback"
START_PATH = "/auth/github"
# `org/team`: GitHub's organization login and team slug.
TEAM = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# RFC 7636: the verifier is 43-128 characters of [A-Za-z0-9-._~].
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_verifier() -> str:
    """A fresh PKCE code verifier (256 random bits, 43 characters)."""
    return secrets.token_urlsafe(32)


def challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 section 4.2)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def verifier_matches(verifier: str, expected_challenge: str) -> bool:
    """Whether a verifier is well formed and hashes to the challenge (constant-time compare)."""
    if not VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(challenge(verifier), expected_challenge)


def new_state() -> str:
    """A fresh `state` value (256 random bits)."""
    return secrets.token_urlsafe(32)


def state_matches(returned: str | None, expected: str | None) -> bool:
    """Whether the `state` GitHub sent back is the one this browser's sign-in started with."""
    if not returned or not expected:
        return False
    return hmac.compare_digest(returned.encode(), expected.encode())


def parse_teams(text: str | None) -> tuple[str, ...]:
    """`org/team,org/team` as a tuple; ValueError naming a malformed entry."""
    teams: list[str] = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if not TEAM.match(entry):
            raise ValueError(f"not an org/team slug: {entry!r}")
        if entry.lower() not in (t.lower() for t in teams):
            teams.append(entry)
    return tuple(teams)


@dataclass(frozen=True)
class Decision:
    """What a person may do on the page, and why (the teams that gave or would give access)."""

    role: Role
    reason: str


def decide(
    memberships: Mapping[str, bool] | Iterable[str],
    reader_teams: Iterable[str],
    admin_teams: Iterable[str],
) -> Decision:
    """reader/admin/refused from the teams a person is an active member of (`org/team`)."""
    if isinstance(memberships, Mapping):
        member = {t.lower() for t, active in memberships.items() if active}
    else:
        member = {t.lower() for t in memberships}
    admins = list(admin_teams)
    readers = list(reader_teams)
    for team in admins:
        if team.lower() in member:
            return Decision("admin", f"member of {team}")
    for team in readers:
        if team.lower() in member:
            return Decision("reader", f"member of {team}")
    named = ", ".join(readers + [t for t in admins if t not in readers]) or "(none configured)"
    return Decision("refused", f"not a member of any of the teams allowed to sign in: {named}")


def recheck_due(checked_at: float, now: float, interval: float | None = None) -> bool:
    """Whether a session's membership check is older than the recheck interval."""
    return now - checked_at >= (RECHECK_SECONDS if interval is None else interval)


def github_url_from_api(api_url: str) -> str:
    """GITHUB_URL's default: api.github.com -> github.com, HOST/api/v3 -> HOST, else the origin."""
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc
    if host.lower() == "api.github.com":
        return f"{parts.scheme}://github.com"
    return f"{parts.scheme}://{host}"


def actor(login: str) -> str:
    """The audit trail's name for a person signed in with GitHub."""
    return f"github:{login}"
