"""Gate policies (GATE_POLICY_PATH) as pure functions: loading, freezes, promotion order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ghapp.core.gate_policies import PolicyError, evaluate, load_policies, parse_policies

POLICIES = """
- id: christmas
  environments: ["prod*"]
  freeze: {from: "2026-12-24T00:00:00+01:00", to: "2026-12-27T00:00:00+01:00"}
  reason: Christmas freeze
- id: weekend
  environments: ["production"]
  weekly_freeze: {from: "fri 16:00", to: "mon 08:00", timezone: Europe/Berlin}
  reason: no deploys over the weekend
- id: staging-first
  environments: ["production"]
  promote_after: staging
  within: 7d
"""


@pytest.fixture
def policies(tmp_path: Path):
    path = tmp_path / "gate.yml"
    path.write_text(POLICIES)
    return load_policies(path)


WEDNESDAY = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
STAGED = {"staging": WEDNESDAY - timedelta(days=1)}


def test_a_promoted_sha_on_a_weekday_passes(policies) -> None:
    assert evaluate(policies, environment="production", now=WEDNESDAY, promoted=STAGED).allowed


def test_a_date_freeze_blocks_until_its_end(policies) -> None:
    now = datetime(2026, 12, 25, 10, tzinfo=UTC)
    verdict = evaluate(policies, environment="production-eu", now=now, promoted=STAGED)
    assert (verdict.allowed, verdict.policy, verdict.reason) == (
        False,
        "christmas",
        "Christmas freeze",
    )
    assert verdict.retry_after == datetime(2026, 12, 26, 23, tzinfo=UTC)
    assert verdict.as_json()["retry_after"] == "2026-12-26T23:00:00Z"
    # `to` is excluded; an override passes a freeze.
    end = datetime(2026, 12, 26, 23, tzinfo=UTC)
    assert evaluate(policies, environment="production-eu", now=end).allowed
    assert evaluate(policies, environment="production-eu", now=now, override=True).allowed


def test_a_weekly_window_crosses_the_week_end_in_its_time_zone(policies) -> None:
    # Friday 15:59 in Berlin (14:59 UTC) passes; 16:00 Berlin is frozen until Monday 08:00 Berlin.
    friday = datetime(2026, 12, 11, 14, 59, tzinfo=UTC)
    assert evaluate(
        policies, environment="production", now=friday, promoted={"staging": friday}
    ).allowed
    frozen = evaluate(policies, environment="production", now=friday + timedelta(minutes=1))
    assert (frozen.allowed, frozen.policy) == (False, "weekend")
    assert frozen.retry_after == datetime(2026, 12, 14, 7, 0, tzinfo=UTC)
    sunday = evaluate(
        policies, environment="production", now=datetime(2026, 12, 13, 23, tzinfo=UTC)
    )
    assert sunday.policy == "weekend"
    monday = datetime(2026, 12, 14, 7, 0, tzinfo=UTC)
    assert evaluate(
        policies, environment="production", now=monday, promoted={"staging": monday}
    ).allowed


def test_a_weekly_window_follows_summer_time() -> None:
    policies = parse_policies(
        [
            {
                "id": "w",
                "environments": ["*"],
                "weekly_freeze": {
                    "from": "fri 16:00",
                    "to": "sat 00:00",
                    "timezone": "Europe/Berlin",
                },
            }
        ]
    )
    # In July Berlin is UTC+2: 16:00 local is 14:00 UTC.
    assert not evaluate(policies, environment="x", now=datetime(2026, 7, 3, 14, tzinfo=UTC)).allowed
    assert evaluate(policies, environment="x", now=datetime(2026, 7, 3, 13, 59, tzinfo=UTC)).allowed


def test_a_window_within_one_day_and_one_crossing_midnight() -> None:
    policies = parse_policies(
        [
            {
                "id": "night",
                "environments": ["*"],
                "weekly_freeze": {"from": "tue 22:00", "to": "wed 06:00", "timezone": "UTC"},
            }
        ]
    )
    at = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)  # a Tuesday
    assert evaluate(policies, environment="x", now=at).retry_after == datetime(
        2026, 12, 9, 6, tzinfo=UTC
    )
    assert evaluate(policies, environment="x", now=at.replace(hour=21)).allowed


def test_promotion_needs_the_same_sha_in_staging_within_the_time(policies) -> None:
    unpromoted = evaluate(
        policies, environment="production", now=WEDNESDAY, promoted={"staging": None}
    )
    assert (unpromoted.allowed, unpromoted.policy, unpromoted.retry_after) == (
        False,
        "staging-first",
        None,
    )
    assert "staging" in unpromoted.reason
    old = {"staging": WEDNESDAY - timedelta(days=8)}
    assert not evaluate(policies, environment="production", now=WEDNESDAY, promoted=old).allowed
    # Overrides pass freezes only; rollbacks are exempt from promotion.
    assert not evaluate(policies, environment="production", now=WEDNESDAY, override=True).allowed
    assert evaluate(policies, environment="production", now=WEDNESDAY, kind="rollback").allowed
    assert [p.id for p in policies.promotions("production")] == ["staging-first"]
    assert policies.promotions("staging") == []


def test_the_first_blocking_policy_in_file_order_decides(policies) -> None:
    christmas_friday = datetime(2026, 12, 25, 17, tzinfo=UTC)
    assert evaluate(policies, environment="production", now=christmas_friday).policy == "christmas"
    assert evaluate(policies, environment="staging", now=christmas_friday).allowed


HEAD = "- id: a\n  environments: [x]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- id: a\n  environments: [x]\n", "needs exactly one of"),
        (
            HEAD + "  freeze: {from: '2026-01-02T00:00:00', to: '2026-01-03T00:00:00+00:00'}\n",
            "needs an offset",
        ),
        (
            HEAD + "  weekly_freeze: {from: 'friday 4pm', to: 'mon 08:00', timezone: UTC}\n",
            "weekday and time",
        ),
        (
            HEAD + "  weekly_freeze: {from: 'fri 16:00', to: 'mon 08:00', timezone: Mars/B}\n",
            "IANA time zone",
        ),
        ("- id: a\n  environments: [x]\n  promote_after: staging\n  within: soon\n", "duration"),
        (
            HEAD + "  promote_after: s\n" + HEAD + "  promote_after: t\n",
            "used twice",
        ),
        ("{id: a}\n", "a list of policies"),
        ("- [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_rule(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policies(path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)
    if "list of" not in message and "YAML" not in message:
        assert "policy 'a'" in str(caught.value)
