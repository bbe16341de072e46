"""The pure state machine of a dispatch recorded before it is sent (ghapp.core.deploy_dispatch):
each outcome of the request, the superseding of a dispatch still being answered, and the
verdict of one whose run never appears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ghapp.core import deploys
from ghapp.core.deploy_dispatch import ORPHANED
from ghapp.core.deploys import (
    CancelRun,
    DeadlinesChecked,
    DeploymentRecord,
    DispatchAnswered,
    DispatchDoubted,
    DispatchNotSent,
    DispatchRefused,
    DropRecord,
    RunObserved,
    SendCallback,
    Superseded,
)
from ghapp.core.models import DeploymentRequest

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RUN = 4242


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def recorded(correlate: bool = True) -> DeploymentRecord:
    return deploys.recorded_deployment(
        "dep_1",
        DeploymentRequest(repository="acme/shop", concurrency="cancel_previous"),
        ref="main",
        callback_url="http://orch.test/cb",
        installation_id=1,
        correlation_id="dep_1" if correlate else None,
        now=T0,
    )


def deadline(seconds: float, lookup: float = 600.0) -> DeadlinesChecked:
    return DeadlinesChecked(at=at(seconds), run_lookup_timeout=lookup, run_timeout=21600)


def test_a_recorded_dispatch_is_dispatched_in_public_and_waits_for_its_request() -> None:
    record = recorded()
    assert record.phase == "recorded" and record.state == "dispatched" and record.run is None
    # Nothing decides it but its own request: deadlines pass it by.
    assert not deploys.apply(record, deadline(10_000)).changed


def test_an_answer_binds_the_run() -> None:
    transition = deploys.apply(recorded(), DispatchAnswered(RUN, "https://x/runs/1", None, at(1)))
    assert transition.changed and transition.record.phase == "dispatched"
    assert transition.record.run is not None and transition.record.run.id == RUN


def test_an_answer_without_a_run_leaves_it_to_the_search() -> None:
    transition = deploys.apply(recorded(), DispatchAnswered(None, None, "dep_1", at(1)))
    assert transition.changed and transition.record.phase == "dispatched"
    assert transition.record.run is None and transition.record.correlation_id == "dep_1"


def test_a_refusal_completes_it_with_its_callback() -> None:
    transition = deploys.apply(recorded(), DispatchRefused("No ref found for: x (422)", at(1)))
    assert transition.record.state == "completed"
    assert transition.record.verdict is not None
    assert transition.record.verdict.reason == "dispatch_rejected"
    assert any(isinstance(a, SendCallback) for a in transition.actions)


def test_a_request_that_never_left_drops_the_record() -> None:
    transition = deploys.apply(recorded(), DispatchNotSent(at(1)))
    assert [type(a) for a in transition.actions] == [DropRecord]
    # Once shown (the sweep doubted it), it is never dropped: its lookup gives the verdict.
    shown = deploys.apply(recorded(), DispatchDoubted(ORPHANED, at(20))).record
    assert not deploys.apply(shown, DispatchNotSent(at(21))).actions


def test_a_5xx_is_looked_for_60_s_then_run_not_found_transient() -> None:
    doubted = deploys.apply(
        recorded(),
        DispatchDoubted("GitHub answered 502 to the dispatch, so it may have started the run",
                        at(1), lookup_seconds=60),
    ).record
    assert doubted.phase == "dispatched" and doubted.run is None
    assert not deploys.apply(doubted, deadline(59)).changed
    done = deploys.apply(doubted, deadline(61)).record
    assert done.verdict is not None and done.verdict.reason == "run_not_found"
    assert "GitHub answered 502 to the dispatch" in done.verdict.summary
    assert done.verdict.cause is not None
    assert done.verdict.cause.category == "transient" and done.verdict.cause.retryable


def test_a_doubted_dispatch_whose_run_appears_is_followed() -> None:
    doubted = deploys.apply(recorded(), DispatchDoubted(ORPHANED, at(20))).record
    run = RunObserved(RUN, 1, "in_progress", None, None, "sha", at(21))
    found = deploys.apply(doubted, run).record
    assert found.run is not None and found.run.id == RUN and found.dispatch_doubt is None
    assert found.state == "in_progress"


def test_a_run_seen_before_the_answer_binds_a_recorded_dispatch() -> None:
    run = RunObserved(RUN, 1, "queued", None, None, "sha", at(1))
    bound = deploys.apply(recorded(), run).record
    assert bound.phase == "dispatched" and bound.run is not None
    # The answer that follows changes nothing.
    assert not deploys.apply(bound, DispatchAnswered(RUN, None, None, at(2))).changed


def test_superseding_a_dispatch_still_being_answered_cancels_its_run_once_known() -> None:
    marked = deploys.apply(recorded(), Superseded(by="dep_2", at=at(1)))
    assert marked.changed and marked.record.phase == "recorded" and marked.record.superseded
    answered = deploys.apply(marked.record, DispatchAnswered(RUN, None, None, at(2)))
    assert answered.actions == [CancelRun(RUN)]
    # Its run cancelled, it ends `superseded`.
    ended = deploys.apply(
        answered.record, RunObserved(RUN, 1, "completed", "cancelled", None, "sha", at(3))
    )
    assert ended.record.phase == "concluding"


def test_a_superseded_dispatch_answered_without_a_run_ends_superseded() -> None:
    marked = deploys.apply(recorded(), Superseded(by="dep_2", at=at(1))).record
    for event in (
        DispatchAnswered(None, None, "dep_1", at(2)),
        DispatchDoubted(ORPHANED, at(20)),
    ):
        done = deploys.apply(marked, event).record
        assert done.verdict is not None and done.verdict.reason == "superseded"
        assert "dep_2" in done.verdict.summary


def test_superseding_a_running_deployment_cancels_its_run() -> None:
    running = deploys.apply(recorded(), DispatchAnswered(RUN, None, None, at(1))).record
    transition = deploys.apply(running, Superseded(by="dep_2", at=at(2)))
    assert transition.actions == [CancelRun(RUN)] and transition.record.superseded
