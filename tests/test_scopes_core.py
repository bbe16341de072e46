"""The pure core of who may do what: grants, decisions, the route table, the audit chain."""

from __future__ import annotations

from ghapp.core import audit, scopes
from ghapp.core.scopes import ADMIN, Grant, decide

SHOP_STAGING = Grant(
    "ci", ("acme/shop",), ("staging",), frozenset({"deploy"}), expires_at=None
)


def test_a_token_deploys_where_it_may_and_nowhere_else() -> None:
    assert decide(SHOP_STAGING, "deploy", "acme/shop", "staging").allowed
    # Case-insensitive globs, as GitHub's names are.
    assert decide(SHOP_STAGING, "deploy", "ACME/Shop", "Staging").allowed
    outside = decide(SHOP_STAGING, "deploy", "acme/api", "staging")
    assert (outside.status, outside.missing_scope) == (404, None)
    production = decide(SHOP_STAGING, "deploy", "acme/shop", "production")
    assert (production.status, production.missing_scope) == (403, "deploy")
    assert "production" in production.message
    # deploy implies read; read elsewhere is invisible, not forbidden.
    assert decide(SHOP_STAGING, "read", "acme/shop", "staging").allowed
    assert decide(SHOP_STAGING, "read", "acme/shop", "production").status == 404
    lacking = decide(SHOP_STAGING, "rollback", "acme/shop", "staging")
    assert (lacking.status, lacking.missing_scope) == (403, "rollback")
    assert decide(SHOP_STAGING, "admin").missing_scope == "admin"


def test_admin_implies_everything_and_globs_match() -> None:
    for scope in scopes.SCOPES:
        assert decide(ADMIN, scope, "any/thing", "production").allowed
    wide = Grant("team", ("acme/*",), ("stag?ng", "dev-*"), frozenset({"read"}))
    assert wide.sees("acme/web", "staging") and wide.sees("acme/web", "dev-eu")
    assert not wide.sees("other/web", "staging") and not wide.sees("acme/web", "prod")
    assert decide(wide, "deploy", "acme/web", "staging").missing_scope == "deploy"


def test_expiry_and_grant_checks() -> None:
    grant = Grant("t", scopes=frozenset({"read"}), expires_at=100.0)
    assert not grant.expired(99.9) and grant.expired(100.0)
    assert scopes.check_grant(["*"], ["*"], ["admin"]) is None
    assert "admin" in (scopes.check_grant(["acme/*"], ["*"], ["admin"]) or "")
    assert "unknown scope" in (scopes.check_grant(["*"], ["*"], ["write"]) or "")
    assert scopes.check_grant(["acme/[ab]"], ["*"], ["read"]) is not None
    assert scopes.within(ADMIN, SHOP_STAGING)
    team = Grant("team", ("acme/*",), ("*",), frozenset({"deploy"}))
    assert scopes.within(team, SHOP_STAGING)
    assert not scopes.within(team, Grant("x", ("other/*",), ("*",), frozenset({"read"})))
    assert not scopes.within(SHOP_STAGING, Grant("y", ("acme/shop",), ("staging",),
                                                 frozenset({"cancel"})))


def test_tokens_digests_and_like_patterns() -> None:
    token = scopes.new_token()
    assert scopes.TOKEN.fullmatch(token) and len(token) == 6 + 43
    assert scopes.digest(token) != scopes.digest(scopes.new_token())
    assert len(scopes.digest(token)) == 64
    assert scopes.like_pattern("acme/*_x?") == "acme/%\\_x_"


def test_route_table_names_every_scope_and_fails_closed() -> None:
    assert scopes.scope_for("POST", "/api/v1/deployments") == "deploy"
    assert scopes.scope_for("HEAD", "/api/v1/deployments/{deployment_id}") == "read"
    assert scopes.scope_for("GET", "/api/v1/audit") == "admin"
    assert scopes.scope_for("GET", "/api/v1/unknown") == "admin"
    assert set(scopes.ROUTE_SCOPES.values()) == set(scopes.SCOPES) - {"override"}


def _chain(count: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    previous = audit.GENESIS
    for n in range(1, count + 1):
        row = audit.sealed(
            {"id": n, "at": f"2026-12-08T00:00:0{n}Z", "actor": "token:ci",
             "action": "deployment.create", "target": f"dep_{n}", "outcome": "202",
             "client": "127.0.0.1", "request_id": None, "reason": None},
            previous,
        )
        previous = str(row["hash"])
        rows.append(row)
    return rows


def test_the_chain_finds_an_edited_and_a_removed_row() -> None:
    rows = _chain(5)
    assert audit.verify(rows) is None
    assert rows[0]["previous_hash"] == "0" * 64
    edited = [dict(r) for r in rows]
    edited[2]["outcome"] = "403"
    broken = audit.verify(edited)
    assert broken is not None and broken.row_id == 3 and "edited" in broken.why
    removed = rows[:2] + rows[3:]
    broken = audit.verify(removed)
    assert broken is not None and broken.row_id == 4 and "removed" in broken.why
    # Pruned: verifiable from the new first row, given the hash it follows.
    assert audit.verify(rows[2:], start_hash=str(rows[1]["hash"])) is None
    # Canonical JSON: sorted keys, no spaces, UTF-8 as is.
    assert audit.canonical({"id": 1, "actor": "é"}).startswith(b'{"action":null,"actor":"\xc3\xa9"')
