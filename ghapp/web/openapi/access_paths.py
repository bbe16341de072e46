"""The OpenAPI description of the token and audit routes (see access_api; admin only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ghapp.core.audit import ACTIONS
from ghapp.core.scopes import NAME_PATTERN
from ghapp.web.access_api import AUDIT_MAX, DURATION_PATTERN, TokenRequest
from ghapp.web.openapi.parts import UNAUTHORIZED, describe, json_answer


class Token(BaseModel):
    """A token as listed (never its value)."""

    name: str
    prefix: str = Field(description="the token's first 10 characters")
    repositories: list[str]
    environments: list[str]
    scopes: list[str]
    created_at: str | None
    last_used_at: str | None
    expires_at: str | None


class TokenCreated(Token):
    """Answer of `POST /api/v1/tokens`: the token's value, shown this once."""

    token: str


class TokenList(BaseModel):
    """Answer of `GET /api/v1/tokens`."""

    tokens: list[Token]


class AuditEntry(BaseModel):
    """One row of the audit trail."""

    id: int
    at: str
    actor: str
    action: str
    target: str | None
    outcome: str
    client: str | None
    request_id: str | None
    reason: str | None
    previous_hash: str
    hash: str


class AuditList(BaseModel):
    """Answer of `GET /api/v1/audit`."""

    entries: list[AuditEntry]


MODELS: list[tuple[type[BaseModel], Any]] = [
    (TokenRequest, "validation"),
    (Token, "serialization"),
    (TokenCreated, "serialization"),
    (TokenList, "serialization"),
    (AuditList, "serialization"),
]
FORBIDDEN = json_answer("ErrorBody", "the token lacks the scope `admin` (missing_scope)")


def paths() -> dict[str, Any]:
    """The path items of the token and audit routes."""
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": NAME_PATTERN}}
    create = describe(
        "createToken",
        "Make a scoped token; its value is in this answer only",
        {
            "201": json_answer("TokenCreated", "the token, with its value"),
            "400": json_answer("ErrorBody", "the body is not JSON"),
            "401": UNAUTHORIZED,
            "408": json_answer("ErrorBody", "the body did not arrive within 30 s of the headers"),
            "413": json_answer("ErrorBody", "the body is over 1 MiB"),
            "403": FORBIDDEN,
            "409": json_answer("ErrorBody", "a token of that name exists"),
            "422": json_answer("ErrorBody", "a name, glob or scope that cannot be used"),
        },
        tag="access",
        requestBody={"required": True,
                     "content": {"application/json": {"schema": {
                         "$ref": "#/components/schemas/TokenRequest"}}}},
    )
    listing = describe(
        "listTokens", "Every token, by name, without values",
        {"200": json_answer("TokenList", "the tokens"), "401": UNAUTHORIZED, "403": FORBIDDEN},
        tag="access",
    )
    one = describe(
        "getToken", "One token, without its value",
        {"200": json_answer("Token", "the token"), "401": UNAUTHORIZED, "403": FORBIDDEN,
         "404": json_answer("ErrorBody", "no such token")},
        tag="access", parameters=[name],
    )
    revoke = describe(
        "revokeToken", "Revoke a token: refused on every replica within 1 s",
        {"204": {"description": "revoked"}, "401": UNAUTHORIZED, "403": FORBIDDEN,
         "404": json_answer("ErrorBody", "no such token")},
        tag="access", parameters=[name],
    )
    audit = describe(
        "listAudit", "The audit trail, newest first",
        {"200": json_answer("AuditList", "the rows"), "401": UNAUTHORIZED, "403": FORBIDDEN,
         "422": json_answer("ErrorBody", "a malformed filter")},
        tag="access",
        parameters=[
            {"name": "actor", "in": "query", "schema": {"type": "string", "maxLength": 200}},
            {"name": "action", "in": "query", "schema": {"enum": list(ACTIONS)}},
            {"name": "since", "in": "query", "description": "a duration back from now: 24h, 7d",
             "schema": {"type": "string", "pattern": DURATION_PATTERN}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": AUDIT_MAX, "default": 100}},
        ],
    )
    return {
        "/api/v1/tokens": {"get": listing, "post": create},
        "/api/v1/tokens/{name}": {"get": one, "delete": revoke},
        "/api/v1/audit": {"get": audit},
    }
