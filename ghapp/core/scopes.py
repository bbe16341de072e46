"""Who may do what: a token's grant (repositories, environments, scopes, expiry), the decision
"may this token do that here" and the route-to-scope table (docs/access.md). Pure: no I/O."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["deploy", "rollback", "cancel", "read", "override", "admin"]
SCOPES: tuple[Scope, ...] = ("deploy", "rollback", "cancel", "read", "override", "admin")
# `deploy`, `rollback` and `cancel` imply `read`; `admin` implies every scope.
IMPLIED: dict[str, frozenset[str]] = {
    "deploy": frozenset({"read"}),
    "rollback": frozenset({"read"}),
    "cancel": frozenset({"read"}),
    "admin": frozenset(SCOPES),
}
# The name ORCHESTRATOR_TOKEN goes by (the admin token of the settings).
ORCHESTRATOR = "orchestrator"
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
NAME = re.compile(NAME_PATTERN)
# Globs: GitHub's characters, `/`, and the wildcards `*` and `?` (no classes: the same glob is
# also matched by the database as a LIKE pattern).
GLOB = re.compile(r"^[A-Za-z0-9._/*?-]{1,200}$")
TOKEN_PREFIX = "ghapp_"
# `ghapp_` + 43 URL-safe characters: 256 random bits.
TOKEN = re.compile(r"^ghapp_[A-Za-z0-9_-]{43}$")

# Which scope each route needs: (method, Starlette path template) -> scope. `override` is
# needed besides `deploy` by a request that carries an override.
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/api/v1/deployments"): "deploy",
    ("GET", "/api/v1/deployments"): "read",
    ("GET", "/api/v1/deployments/{deployment_id}"): "read",
    ("GET", "/api/v1/deployments/{deployment_id}/events"): "read",
    ("GET", "/api/v1/deployments/{deployment_id}/report"): "read",
    ("POST", "/api/v1/deployments/{deployment_id}/cancel"): "cancel",
    ("POST", "/api/v1/deployments/{deployment_id}/callback"): "deploy",
    ("GET", "/api/v1/repos/{owner}/{repo}/environments"): "read",
    ("GET", "/api/v1/repos/{owner}/{repo}/environments/{environment}/releases"): "read",
    ("POST", "/api/v1/repos/{owner}/{repo}/environments/{environment}/rollback"): "rollback",
    ("GET", "/api/v1/stats"): "read",
    ("GET", "/api/v1/gate/preview"): "read",
    ("POST", "/api/v1/repos/{owner}/{repo}/deploy-key"): "admin",
    ("GET", "/api/v1/deliveries"): "admin",
    ("POST", "/api/v1/deliveries/{delivery_id}/redeliver"): "admin",
    ("GET", "/api/v1/gate/decisions"): "admin",
    ("POST", "/api/v1/gate/decisions/{id}/approve"): "admin",
    ("POST", "/api/v1/gate/decisions/{id}/reject"): "admin",
    ("GET", "/api/v1/tokens"): "admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("GET", "/api/v1/tokens/{name}"): "admin",
    ("DELETE", "/api/v1/tokens/{name}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/check/{owner}/{repo}"): "admin",
}


def scope_for(method: str, path_template: str) -> Scope:
    """The scope a route needs; `admin` for a route the table does not name (fail closed)."""
    method = "GET" if method == "HEAD" else method
    return ROUTE_SCOPES.get((method, path_template), "admin")


def digest(token: str) -> str:
    """The SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token value: `ghapp_` + 43 URL-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def glob_matches(patterns: tuple[str, ...], value: str) -> bool:
    """Whether any glob matches the value, case-insensitively."""
    lowered = value.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def like_pattern(glob: str) -> str:
    """The glob as an SQL LIKE pattern (escape `\\`), for matching in the database."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@dataclass(frozen=True)
class Grant:
    """What one token may do: where (repository and environment globs), what, until when."""

    name: str
    repositories: tuple[str, ...] = ("*",)
    environments: tuple[str, ...] = ("*",)
    scopes: frozenset[str] = frozenset({"read"})
    expires_at: float | None = None
    effective: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        implied = set(self.scopes)
        for scope in self.scopes:
            implied |= IMPLIED.get(scope, frozenset())
        object.__setattr__(self, "effective", frozenset(implied))

    @property
    def admin(self) -> bool:
        """Whether the token holds `admin` (every scope, everywhere)."""
        return "admin" in self.effective

    @property
    def everywhere(self) -> bool:
        """Whether the token's repositories and environments are both `*`."""
        return self.repositories == ("*",) and self.environments == ("*",)

    def sees_repository(self, repository: str) -> bool:
        """Whether the repository is among the token's."""
        return glob_matches(self.repositories, repository)

    def sees_environment(self, environment: str) -> bool:
        """Whether the environment is among the token's."""
        return glob_matches(self.environments, environment)

    def sees(self, repository: str, environment: str | None) -> bool:
        """Whether the token may read what is of this repository (and environment)."""
        return self.sees_repository(repository) and (
            environment is None or self.sees_environment(environment)
        )

    def expired(self, now: float) -> bool:
        """Whether the token has passed its expiry."""
        return self.expires_at is not None and now >= self.expires_at


ADMIN = Grant(ORCHESTRATOR, scopes=frozenset({"admin"}))


@dataclass(frozen=True)
class Decision:
    """Allowed, or the answer that refuses: 404 (not the token's to see) or 403 (a scope)."""

    status: int = 200
    missing_scope: str | None = None
    message: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the request may go on."""
        return self.status == 200


ALLOW = Decision()
NOT_FOUND = Decision(404, None, "no such deployment")


def decide(
    grant: Grant, scope: str, repository: str | None = None, environment: str | None = None
) -> Decision:
    """May this token use `scope` on this repository and environment (None: not about one)?

    Outside its repositories: 404, as if nothing were there. A scope it lacks, or an action
    (deploy, rollback, cancel) in an environment outside its own: 403 naming the scope. Reading
    in an environment outside its own: 404 too (lists leave those out)."""
    if repository is not None and not grant.sees_repository(repository):
        return NOT_FOUND
    if scope not in grant.effective:
        return _forbidden(grant, scope, f"the token {grant.name!r} lacks the scope {scope!r}")
    if environment is not None and not grant.sees_environment(environment):
        if scope == "read":
            return NOT_FOUND
        return _forbidden(
            grant,
            scope,
            f"the token {grant.name!r} may not {scope} in the environment {environment!r}",
        )
    return ALLOW


def _forbidden(grant: Grant, scope: str, message: str) -> Decision:
    return Decision(403, scope, message)


def check_grant(
    repositories: list[str], environments: list[str], scopes: list[str]
) -> str | None:
    """Why a grant cannot be made (None when it can): globs, known scopes, admin everywhere."""
    for glob in (*repositories, *environments):
        if not GLOB.fullmatch(glob):
            return f"{glob!r} is not a glob of letters, digits, . _ - / * ?"
    if not repositories or not environments:
        return "repositories and environments need at least one glob each"
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        return f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})"
    if not scopes:
        return "at least one scope"
    if "admin" in scopes and (repositories != ["*"] or environments != ["*"]):
        return "admin needs repositories and environments ['*']"
    return None


def within(parent: Grant, child: Grant) -> bool:
    """Whether a token may create another: the child's grant is inside its own."""
    if parent.admin:
        return True
    if not child.scopes <= parent.effective:
        return False
    return all(glob_matches(parent.repositories, r) for r in child.repositories) and all(
        glob_matches(parent.environments, e) for e in child.environments
    )
