"""The deployment state machine, without any network: ordering, repetition, verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ghapp.core import deploys
from ghapp.core.deploys import (
    DeadlinesChecked,
    DeployedUrlFound,
    DeploymentRecord,
    DispatchAnswered,
    DispatchRefused,
    EnvironmentObserved,
    FailureGathered,
    FindDeployedUrl,
    GatherFailure,
    RunObserved,
    SendCallback,
)
from ghapp.core.models import DeploymentRequest, FailedJob, FailedStep

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
RUN = 4242


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fresh(run_id: int | None = RUN) -> DeploymentRecord:
    return deploys.new_deployment(
        "dep_1",
        DeploymentRequest(repository="acme/shop"),
        ref="main",
        callback_url="http://orch.test/cb",
        installation_id=7,
        run_id=run_id,
        html_url=None,
        now=T0,
    )


def run(
    status: str, conclusion: str | None = None, *, attempt: int = 1, t: float = 1, run_id: int = RUN
) -> RunObserved:
    return RunObserved(
        run_id=run_id,
        attempt=attempt,
        status=status,
        conclusion=conclusion,
        html_url=f"https://github.com/acme/shop/actions/runs/{run_id}",
        head_sha="abc123",
        at=at(t),
    )


def env(url: str = "https://shop.example.com", state: str = "success") -> EnvironmentObserved:
    return EnvironmentObserved(run_id=RUN, state=state, environment_url=url, at=at(2))


def feed(record: DeploymentRecord, *events: deploys.Event) -> tuple[DeploymentRecord, list[object]]:
    actions: list[object] = []
    for event in events:
        transition = deploys.apply(record, event)
        record = transition.record
        actions.extend(transition.actions)
    return record, actions


def test_new_deployment_is_dispatched_with_its_run() -> None:
    record = fresh()
    assert record.state == "dispatched"
    assert record.run is not None and record.run.id == RUN
    assert record.verdict is None
    assert record.public().callback.state == "pending"


def test_requested_then_in_progress_moves_state() -> None:
    record, actions = feed(fresh(), run("queued"))
    assert record.state == "dispatched"
    record, actions = feed(record, run("in_progress", t=2))
    assert record.state == "in_progress"
    assert actions == []


def test_success_with_url_seen_first_completes_at_once() -> None:
    record, actions = feed(fresh(), run("in_progress"), env(), run("completed", "success", t=3))
    assert record.state == "completed"
    assert record.verdict is not None
    assert record.verdict.status == "success"
    assert record.verdict.reason is None
    assert record.verdict.deployed_url == "https://shop.example.com"
    assert actions == [SendCallback()]


def test_success_without_url_looks_it_up_then_completes() -> None:
    record, actions = feed(fresh(), run("completed", "success"))
    assert record.state == "in_progress" and record.phase == "concluding"
    assert actions == [FindDeployedUrl(run_id=RUN, head_sha="abc123")]
    record, actions = feed(record, DeployedUrlFound(url="https://x.example", at=at(5)))
    assert record.verdict is not None and record.verdict.deployed_url == "https://x.example"
    assert actions == [SendCallback()]


def test_environment_arriving_after_completed_wins_over_lookup() -> None:
    record, _ = feed(fresh(), run("completed", "success"), env("https://late.example"))
    assert record.verdict is not None and record.verdict.deployed_url == "https://late.example"
    # The lookup finishing afterwards must not produce a second verdict.
    transition = deploys.apply(record, DeployedUrlFound(url="https://other", at=at(9)))
    assert not transition.changed and transition.actions == []


def test_failure_gathers_jobs_then_reports_them() -> None:
    record, actions = feed(fresh(), run("completed", "failure"))
    assert actions == [GatherFailure(run_id=RUN, attempt=1, conclusion="failure")]
    job = FailedJob(
        id=1, name="deploy", conclusion="failure", failed_step=FailedStep(number=4, name="SSH")
    )
    record, actions = feed(
        record, FailureGathered(failed_jobs=[job], summary="Job 'deploy' failed", at=at(4))
    )
    assert record.verdict is not None
    assert record.verdict.status == "failure"
    assert record.verdict.reason == "failure"
    assert record.verdict.failed_jobs == [job]
    assert actions == [SendCallback()]


def test_conclusions_map_to_reasons() -> None:
    for conclusion in ("cancelled", "timed_out", "startup_failure", "action_required"):
        record, _ = feed(
            fresh(),
            run("completed", conclusion),
            FailureGathered(failed_jobs=[], summary="x", at=at(3)),
        )
        assert record.verdict is not None and record.verdict.reason == conclusion
    record, _ = feed(
        fresh(), run("completed", "weird"), FailureGathered(failed_jobs=[], summary="x", at=at(3))
    )
    assert record.verdict is not None and record.verdict.reason == "failure"


def test_repeated_completed_gives_one_verdict() -> None:
    record, actions = feed(
        fresh(), env(), run("completed", "success"), run("completed", "success"), env()
    )
    assert actions == [SendCallback()]
    assert record.state == "completed"


def test_out_of_order_events_do_not_regress() -> None:
    record, actions = feed(
        fresh(),
        run("completed", "failure", t=5),
        run("in_progress", t=6),
        run("queued", t=7),
    )
    assert record.phase == "concluding"
    assert record.run is not None and record.run.status == "completed"
    assert len(actions) == 1


def test_events_of_another_run_are_ignored() -> None:
    record = fresh()
    transition = deploys.apply(record, run("completed", "success", run_id=999))
    assert not transition.changed
    assert transition.record.state == "dispatched"


def test_rerun_after_verdict_is_recorded_not_reported() -> None:
    record, _ = feed(fresh(), env(), run("completed", "success"))
    record, actions = feed(
        record,
        run("in_progress", attempt=2, t=20),
        run("completed", "failure", attempt=2, t=30),
        run("completed", "failure", attempt=2, t=31),
    )
    assert actions == []
    assert record.verdict is not None and record.verdict.status == "success"
    assert [(r.attempt, r.status) for r in record.reruns] == [(2, "completed")]


def test_run_unknown_binds_on_first_event() -> None:
    record, _ = feed(fresh(run_id=None), run("in_progress"))
    assert record.run is not None and record.run.id == RUN


def test_pending_actions_survive_a_restart() -> None:
    record, _ = feed(fresh(), run("completed", "timed_out"))
    restored = DeploymentRecord.model_validate_json(record.model_dump_json())
    assert deploys.pending_actions(restored) == [
        GatherFailure(run_id=RUN, attempt=1, conclusion="timed_out")
    ]
    assert deploys.pending_actions(fresh()) == []


def test_run_lookup_deadline_gives_run_not_found() -> None:
    record = fresh(run_id=None)
    early = deploys.apply(
        record, DeadlinesChecked(at=at(599), run_lookup_timeout=600, run_timeout=21600)
    )
    assert not early.changed
    late = deploys.apply(
        record, DeadlinesChecked(at=at(601), run_lookup_timeout=600, run_timeout=21600)
    )
    assert late.record.verdict is not None
    assert late.record.verdict.reason == "run_not_found"
    assert late.actions == [SendCallback()]


def test_run_timeout_reports_timed_out() -> None:
    record, _ = feed(fresh(), run("in_progress"))
    transition = deploys.apply(
        record, DeadlinesChecked(at=at(21601), run_lookup_timeout=600, run_timeout=21600)
    )
    assert transition.record.verdict is not None
    assert transition.record.verdict.reason == "timed_out"


def test_rejected_deployment_is_completed_with_github_message() -> None:
    transition = deploys.rejected_deployment(
        "dep_2",
        DeploymentRequest(repository="acme/shop", workflow="nope.yml"),
        ref="main",
        callback_url="http://orch.test/cb",
        message="Not Found (404)",
        now=T0,
    )
    verdict = transition.record.verdict
    assert verdict is not None and verdict.reason == "dispatch_rejected"
    assert "Not Found (404)" in verdict.summary
    assert transition.actions == [SendCallback()]


def test_public_view_hides_internal_fields() -> None:
    body = fresh().public().model_dump()
    assert "installation_id" not in body and "phase" not in body and "version" not in body
    assert set(body) == {
        "id",
        "repository",
        "workflow",
        "ref",
        "inputs",
        "environment",
        "metadata",
        "kind",
        "rollback_of",
        "state",
        "run",
        "verdict",
        "callback",
        "created_at",
        "updated_at",
        "completed_at",
        "reruns",
        "progress",
        "requested_by",
    }


def test_repeated_status_refreshes_the_polling_clock_sparingly() -> None:
    record, _ = feed(fresh(), run("in_progress", t=1))
    soon = deploys.apply(record, run("in_progress", t=3))
    assert not soon.changed  # two seconds later: not worth a write
    later = deploys.apply(record, run("in_progress", t=10))
    assert later.changed and later.record.last_heard_at == at(10)
    assert later.actions == []
    # Only the clock moved, so the write may wait; the record itself is untouched.
    assert later.liveness_only and record.last_heard_at == at(1)
    assert later.record.model_dump(exclude={"last_heard_at"}) == record.model_dump(
        exclude={"last_heard_at"}
    )
    # A new status is no mere sign of life.
    completed = deploys.apply(record, run("completed", t=10))
    assert completed.changed and not completed.liveness_only


def deadline(t: float, report_timeout: float = 300) -> DeadlinesChecked:
    return DeadlinesChecked(
        at=at(t), run_lookup_timeout=600, run_timeout=21600, report_timeout=report_timeout
    )


def test_concluding_failure_past_report_timeout_gets_its_verdict() -> None:
    record, _ = feed(fresh(), run("completed", "failure", t=10))
    assert record.phase == "concluding"
    assert not deploys.apply(record, deadline(309)).changed
    transition = deploys.apply(record, deadline(310))
    verdict = transition.record.verdict
    assert verdict is not None and transition.actions == [SendCallback()]
    assert (verdict.status, verdict.reason, verdict.failed_jobs) == ("failure", "failure", [])
    assert verdict.summary == (
        f"Run {RUN} ended with failure; its failed jobs could not be read from GitHub within "
        "300 s (REPORT_TIMEOUT), so this verdict has no job details."
    )
    # What the gatherer brings after that changes nothing: one verdict.
    late = FailureGathered(failed_jobs=[], summary="late", at=at(311))
    assert not deploys.apply(transition.record, late).changed


def test_concluding_success_past_report_timeout_is_a_success_without_url() -> None:
    record, _ = feed(fresh(), run("completed", "success", t=10))
    transition = deploys.apply(record, deadline(20, report_timeout=5))
    verdict = transition.record.verdict
    assert verdict is not None and verdict.status == "success" and verdict.deployed_url is None
    assert "environment URL could not be read within 5 s" in verdict.summary


def test_run_timeouts_still_apply_to_unfinished_runs_only() -> None:
    record, _ = feed(fresh(), run("in_progress"))
    assert not deploys.apply(record, deadline(400, report_timeout=1)).changed


def test_late_dispatch_answer_binds_the_run_once() -> None:
    record = fresh(run_id=None)
    bound = deploys.apply(record, DispatchAnswered(RUN, "https://x/runs/1", None, at(6)))
    assert bound.changed and bound.record.run is not None and bound.record.run.id == RUN
    again = deploys.apply(bound.record, DispatchAnswered(RUN + 1, None, None, at(7)))
    assert not again.changed  # a run is never replaced
    old_way = deploys.apply(record, DispatchAnswered(None, None, "dep_1", at(6)))
    assert old_way.record.correlation_id == "dep_1" and old_way.record.run is None


def test_late_dispatch_refusal_completes_with_dispatch_rejected() -> None:
    record = fresh(run_id=None)
    transition = deploys.apply(record, DispatchRefused("No ref found for: nope (422)", at(6)))
    verdict = transition.record.verdict
    assert verdict is not None and verdict.reason == "dispatch_rejected"
    # GitHub's message is quoted as a code span: its words are told apart from ghapp's.
    assert verdict.summary.endswith(": `No ref found for: nope (422)`")
    assert transition.actions == [SendCallback()]
    # Once the run is known, a refusal cannot be right: it is ignored.
    known = fresh()
    assert not deploys.apply(known, DispatchRefused("no", at(6))).changed
