"""The pure core of sign-in with GitHub: PKCE, state, the role from teams, the recheck rule."""

from __future__ import annotations

import pytest

from ghapp.core import signin


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    # RFC 7636 Appendix B's worked example.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert signin.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert signin.verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


def test_a_fresh_verifier_is_valid_and_a_different_one_does_not_match() -> None:
    first, second = signin.new_verifier(), signin.new_verifier()
    assert first != second
    assert signin.VERIFIER.match(first)
    assert signin.verifier_matches(first, signin.challenge(first))
    assert not signin.verifier_matches(second, signin.challenge(first))
    # Too short to be a verifier at all, even when it hashes right.
    assert not signin.verifier_matches("short", signin.challenge("short"))


def test_state_must_be_present_and_equal() -> None:
    state = signin.new_state()
    assert signin.state_matches(state, state)
    assert not signin.state_matches(signin.new_state(), state)
    assert not signin.state_matches(None, state)
    assert not signin.state_matches(state, None)
    assert not signin.state_matches("", "")


def test_teams_parse_and_refuse_malformed_entries() -> None:
    assert signin.parse_teams(" acme/ops , acme/sre,,acme/OPS") == ("acme/ops", "acme/sre")
    assert signin.parse_teams(None) == ()
    with pytest.raises(ValueError, match="ops"):
        signin.parse_teams("ops")
    with pytest.raises(ValueError, match="org/team"):
        signin.parse_teams("acme/ops/extra")


def test_admin_team_wins_reader_team_reads_others_are_refused_with_the_teams_named() -> None:
    readers, admins = ("acme/dev",), ("acme/ops",)
    assert signin.decide({"acme/ops": True}, readers, admins).role == "admin"
    assert signin.decide(["ACME/Dev"], readers, admins).role == "reader"
    both = signin.decide(["acme/dev", "acme/ops"], readers, admins)
    assert both.role == "admin"
    # A pending invitation (not active) gives nothing.
    refused = signin.decide({"acme/dev": False}, readers, admins)
    assert refused.role == "refused"
    assert "acme/dev" in refused.reason and "acme/ops" in refused.reason
    assert signin.decide([], (), ()).role == "refused"


def test_recheck_is_due_after_ten_minutes() -> None:
    assert not signin.recheck_due(1000.0, 1000.0 + 599)
    assert signin.recheck_due(1000.0, 1000.0 + 600)
    assert signin.recheck_due(1000.0, 1001.0, interval=1)


def test_github_url_defaults_from_the_api_url() -> None:
    assert signin.github_url_from_api("https://api.github.com") == "https://github.com"
    assert signin.github_url_from_api("https://ghe.example/api/v3") == "https://ghe.example"
    assert signin.github_url_from_api("http://127.0.0.1:8123/") == "http://127.0.0.1:8123"
    assert signin.actor("octocat") == "github:octocat"
