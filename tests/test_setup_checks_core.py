"""The set-up checks' decisions (pure): what each answer means, what to do about it."""

from __future__ import annotations

from typing import Any

import pytest

from ghapp.core.setup_checks import (
    CHECK_IDS,
    Answer,
    judge_callback,
    judge_deliveries,
    judge_permissions,
    judge_workflow,
    passed,
    report,
)

API = "https://api.github.com"
WANTED = {"actions": "write", "contents": "read", "secrets": "write", "members": "read"}


def installation(kind: str, **granted: str) -> dict[str, Any]:
    return {
        "target_type": kind,
        "permissions": granted,
        "html_url": "https://github.com/settings/installations/7",
    }


def test_permissions_compare_levels_and_skip_organisation_ones_on_a_user() -> None:
    on_user = installation("User", actions="write", contents="write", secrets="write")
    assert judge_permissions(WANTED, on_user, None).ok
    on_org = installation("Organization", actions="write", contents="read", secrets="read")
    check = judge_permissions(WANTED, on_org, None)
    assert not check.ok
    assert (
        check.detail == "the installation lacks secrets: write (has read), members: read (has none)"
    )
    assert check.fix == (
        "accept the new permissions on the installation "
        "(https://github.com/settings/installations/7)"
    )
    # When the App itself does not ask for it, accepting is not enough.
    app = {"permissions": {"actions": "write", "contents": "read", "secrets": "write"}}
    fix = judge_permissions(WANTED, on_org, app).fix or ""
    assert fix.startswith("the App itself does not ask for members: read (has none)")


def contents(text: str) -> tuple[str, Answer]:
    return text, Answer(200, {"type": "file"})


@pytest.mark.parametrize(
    ("on", "ok"),
    [
        ("on: workflow_dispatch", False),  # no inputs at all, so no ghapp_id
        ("on: [push, workflow_dispatch]", False),
        ("on: {workflow_dispatch: {inputs: {ghapp_id: {type: string}}}}", True),
        ("true: {workflow_dispatch: {inputs: {ghapp_id: {}}}}", True),  # YAML 1.1's `on`
        ("on: push", False),
    ],
)
def test_the_triggers_in_every_form(on: str, ok: bool) -> None:
    text, answer = contents(f"name: Deploy\n{on}\njobs: {{}}\n")
    check = judge_workflow(text, answer, path="p.yml", branch="main", environment=None, api_url=API)
    assert check.ok is ok, check.detail


def test_a_workflow_that_is_not_yaml() -> None:
    text, answer = contents("on: [unclosed\n")
    check = judge_workflow(text, answer, path="p.yml", branch="main", environment=None, api_url=API)
    assert not check.ok and check.detail.startswith("p.yml on main is not valid YAML")


def delivery(guid: str, code: int, event: str = "workflow_run") -> dict[str, Any]:
    return {
        "guid": guid,
        "status_code": code,
        "status": "OK" if code == 200 else f"Invalid HTTP Response: {code}",
        "event": event,
        "delivered_at": "2026-01-01T00:00:00Z",
    }


def test_a_delivery_redelivered_with_success_is_not_lost() -> None:
    # Newest first, as GitHub lists them: the redelivery of `b` succeeded.
    items = [delivery("b", 200), delivery("a", 200), delivery("b", 500)]
    assert judge_deliveries(Answer(200, items), API).ok
    items = [delivery("c", 401, "workflow_job"), *items]
    check = judge_deliveries(Answer(200, items), API)
    assert not check.ok
    assert "1 of the App's 3 latest webhook deliveries got no 2xx answer" in check.detail
    assert "workflow_job" in check.detail and "WEBHOOK_SECRET" in (check.fix or "")
    none = judge_deliveries(Answer(200, []), API)
    assert not none.ok and "no webhook delivery" in none.detail


def test_callback_without_a_url() -> None:
    assert judge_callback(None, ["orch.internal"], None).ok
    assert not judge_callback(None, [], None).ok
    assert not judge_callback("https://o/cb", [], None, signed=False).ok
    redirected = judge_callback("https://o/cb", [], Answer(301))
    assert not redirected.ok and "does not follow redirects" in (redirected.fix or "")


def test_the_report_is_in_the_contracts_order() -> None:
    checks = [passed(name, "fine") for name in reversed(CHECK_IDS)]
    result = report(checks)
    assert [c.id for c in result.checks] == list(CHECK_IDS) and result.ok


def test_text_from_github_is_quoted_on_one_line() -> None:
    answer = Answer(401, None, "Bad\x1b[31m credentials\nsecond line")
    check = judge_deliveries(answer, API)
    assert "\x1b" not in check.detail and "\n" not in check.detail
