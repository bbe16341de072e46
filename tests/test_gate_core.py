"""The gate's decisions as pure functions: whose run it is, and what ghapp answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ghapp.core.deploy_dispatch import new_deployment
from ghapp.core.deploy_events import (
    CancelRun,
    DeadlinesChecked,
    ReviewDecided,
    ReviewRequested,
    SendCallback,
)
from ghapp.core.deploy_record import DeploymentRecord
from ghapp.core.deploys import apply
from ghapp.core.gate import RunFacts, callback_body, decide, request_of, run_id_of, whose_run
from ghapp.core.gate_policies import PolicyVerdict
from ghapp.core.request_models import DeploymentRequest

BOT = "ghapp-test[bot]"
NOW = datetime(2026, 12, 9, 12, tzinfo=UTC)
URL = "https://api.github.com/repos/acme/shop/actions/runs/4242/deployment_protection_rule"


def deployment(phase: str = "dispatched"):
    record = new_deployment(
        "dep_1",
        DeploymentRequest(repository="acme/shop"),
        ref="main",
        callback_url=None,
        installation_id=1,
        run_id=4242,
        html_url=None,
        now=NOW,
    )
    record.phase = phase  # type: ignore[assignment]
    return record


def test_the_run_id_comes_from_the_callback_url() -> None:
    assert run_id_of(URL) == 4242
    assert (
        run_id_of(
            "https://api.github.com/repos/acme/shop/actions/runs/x/deployment_protection_rule"
        )
        is None
    )
    payload = {
        "action": "requested",
        "environment": "production",
        "event": "workflow_dispatch",
        "deployment_callback_url": URL,
        "sha": "abc",
        "ref": "refs/heads/main",
        "installation": {"id": 7},
        "repository": {"full_name": "acme/shop"},
        "sender": {"login": "octocat"},
    }
    request = request_of(payload)
    assert request is not None
    assert (request.run_id, request.environment, request.installation_id) == (4242, "production", 7)
    assert request_of({**payload, "deployment_callback_url": None}) is None


def test_only_the_dispatched_attempt_by_the_bot_of_an_unfinished_deployment_is_ghapps() -> None:
    mine = RunFacts(attempt=1, triggering_actor=BOT)
    assert whose_run(deployment(), mine, BOT).origin == "ghapp"
    rerun = whose_run(deployment(), RunFacts(attempt=2, triggering_actor=BOT), BOT)
    assert (rerun.origin, "re-run" in rerun.why) == ("foreign", True)
    typed = whose_run(deployment(), RunFacts(attempt=1, triggering_actor="mallory"), BOT)
    assert (typed.origin, "mallory" in typed.why) == ("foreign", True)
    done = whose_run(deployment("completed"), mine, BOT)
    assert (done.origin, done.completed) == ("foreign", True)
    assert whose_run(None, mine, BOT).origin == "foreign"
    assert whose_run(deployment(), None, BOT).origin == "foreign"


def test_ghapps_run_is_approved_or_rejected_by_the_policies() -> None:
    record = deployment()
    whose = whose_run(record, RunFacts(1, BOT), BOT)
    approved = decide(gate="on", foreign="reject", whose=whose, record=record)
    assert (approved.decision, approved.state) == ("approved", "approved")
    assert approved.comment == "ghapp: deployment dep_1 (requested by the orchestrator)"
    frozen = PolicyVerdict(False, "weekend", "no deploys over the weekend", NOW)
    rejected = decide(gate="on", foreign="approve", whose=whose, record=record, policy=frozen)
    assert (rejected.decision, rejected.policy, rejected.retry_after) == (
        "rejected",
        "weekend",
        NOW,
    )
    assert "no deploys over the weekend" in rejected.comment


def test_foreign_runs_follow_gate_foreign_and_gate_off_approves_everything() -> None:
    whose = whose_run(None, RunFacts(1, "octocat"), BOT)
    assert decide(gate="on", foreign="reject", whose=whose, record=None).decision == "rejected"
    assert decide(gate="on", foreign="approve", whose=whose, record=None).decision == "approved"
    held = decide(gate="on", foreign="hold", whose=whose, record=None)
    assert (held.decision, held.state) == ("held", None)
    assert "POST /api/v1/deployments" in held.comment
    off = decide(
        gate="off",
        foreign="reject",
        whose=whose,
        record=None,
        policy=PolicyVerdict(False, "x", "frozen", None),
    )
    assert (off.decision, "gate is off" in off.comment) == ("approved", True)
    # A later request for a completed deployment's run is rejected whatever GATE_FOREIGN says.
    done = whose_run(deployment("completed"), RunFacts(1, BOT), BOT)
    assert (
        decide(gate="on", foreign="approve", whose=done, record=deployment("completed")).decision
        == "rejected"
    )


def test_the_callback_body_is_githubs_and_the_comment_is_cut() -> None:
    body = callback_body("production", "approved", "x" * 2000)
    assert set(body) == {"environment_name", "state", "comment"}
    assert len(body["comment"]) == 1024


def test_time_waiting_for_reviewers_does_not_count_toward_the_run_timeout() -> None:
    record = deployment()
    record.dispatched_at = NOW - timedelta(seconds=100)

    def tick(rec: DeploymentRecord, seconds_later: float = 0) -> list[object]:
        at = NOW + timedelta(seconds=seconds_later)
        return apply(rec, DeadlinesChecked(at=at, run_lookup_timeout=600, run_timeout=60)).actions

    # Waiting for reviewers for 90 of the 100 s: 10 s of running, under the 60 s allowed.
    waiting = apply(record, ReviewRequested(4242, "production", ("octocat",),
                                            NOW - timedelta(seconds=90))).record
    assert waiting.progress is not None and waiting.progress.waiting is not None
    assert tick(waiting) == []
    approved = apply(waiting, ReviewDecided(4242, "production", "approved", "octocat", "", NOW))
    assert approved.record.progress is not None and approved.record.progress.waiting is None
    assert approved.record.waited_seconds == 90
    assert tick(approved.record, 49) == []
    # Past it: the verdict is timed_out, and the run is cancelled with it.
    actions = tick(approved.record, 51)
    assert actions[0] == CancelRun(4242) and SendCallback() in actions
    # Without the wait, the same record times out at once.
    assert CancelRun(4242) in tick(record)


def test_a_reviewers_rejection_is_the_verdict() -> None:
    rejected = apply(deployment(), ReviewDecided(4242, "production", "rejected", "octocat",
                                                 "not on a Friday", NOW)).record
    assert rejected.verdict is not None
    assert (rejected.verdict.reason, rejected.state) == ("review_rejected", "completed")
    assert "octocat" in rejected.verdict.summary and "not on a Friday" in rejected.verdict.summary
    # A review of another run changes nothing.
    other = apply(deployment(), ReviewDecided(1, "production", "rejected", "x", "", NOW))
    assert not other.changed
