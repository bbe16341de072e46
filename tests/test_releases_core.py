"""The pure parts: what a rollback restores, and the state machine's rollback and supersede."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ghapp.core import deploys, releases
from ghapp.core.deploys import (
    DeploymentRecord,
    FailureGathered,
    GatherFailure,
    RollbackDecided,
    RunObserved,
    SendCallback,
    StartRollback,
    Superseded,
)
from ghapp.core.models import Annotation, DeploymentRequest, FailedJob, Verdict

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def made(name: str, version: str, *, kind: str = "deploy", of: str | None = None,
         **request: object) -> DeploymentRecord:
    record = deploys.new_deployment(
        name, DeploymentRequest(repository="acme/shop", inputs={"version": version}, **request),  # type: ignore[arg-type]
        ref="main", callback_url="http://orch.test/cb", installation_id=1, run_id=7,
        html_url=None, now=T0, kind=kind, rollback_of=of,  # type: ignore[arg-type]
    )
    record.verdict = Verdict(status="success", summary="-")
    return record


def test_rolling_back_walks_back_instead_of_swinging() -> None:
    v1, v2, v3 = made("d1", "v1"), made("d2", "v2"), made("d3", "v3")
    history = [v3, v2, v1]
    assert releases.rollback_target(history, None) is v2
    back_to_v2 = made("r1", "v2", kind="rollback", of="d2")
    history = [back_to_v2, *history]
    assert releases.rollback_target(history, None) is v1
    back_to_v1 = made("r2", "v1", kind="rollback", of="d1")
    history = [back_to_v1, *history]
    assert releases.rollback_target(history, None) is None
    assert releases.rollback_target(history, "d3") is v3
    assert releases.rollback_target(history, "r2") is None  # the current one is not earlier
    assert releases.rollback_target([], None) is None
    view = releases.environment_view("production", [v3, v2, v1])
    assert view.current is not None and view.current.version == "v3"
    assert view.previous is not None and view.previous.deployment_id == "d2"


def test_version_is_the_input_else_the_commit() -> None:
    record = made("d1", "")
    record.head_sha = "abc"
    assert releases.version_of(record) == "abc"
    assert releases.version_of(made("d2", "v9")) == "v9"


def failing(on_failure: str = "rollback") -> DeploymentRecord:
    record = deploys.new_deployment(
        "dep_1", DeploymentRequest(repository="acme/shop", on_failure=on_failure),  # type: ignore[arg-type]
        ref="main", callback_url="http://orch.test/cb", installation_id=1, run_id=7,
        html_url=None, now=T0,
    )
    done = RunObserved(7, 1, "completed", "failure", None, "abc", T0 + timedelta(seconds=5))
    transition = deploys.apply(record, done)
    assert isinstance(transition.actions[0], GatherFailure)
    return transition.record


def test_a_failure_holds_its_callback_until_the_rollback_started() -> None:
    gathered = FailureGathered(failed_jobs=[], summary="Deploy failed.", at=T0)
    transition = deploys.apply(failing(), gathered)
    assert transition.actions == [StartRollback("acme/shop", "production")]
    held = transition.record
    assert held.state != "completed" and held.verdict is None
    assert deploys.pending_actions(held) == [StartRollback("acme/shop", "production")]
    decided = deploys.apply(held, RollbackDecided("dep_rb", "dep_good", T0))
    assert decided.actions == [SendCallback()]
    verdict = decided.record.verdict
    assert verdict is not None and verdict.rollback is not None
    assert (verdict.rollback.deployment_id, verdict.rollback.to) == ("dep_rb", "dep_good")
    none = deploys.apply(held, RollbackDecided(None, None, T0)).record.verdict
    assert none is not None and none.rollback is None and none.status == "failure"


def test_report_only_and_cancelled_runs_start_no_rollback() -> None:
    gathered = FailureGathered(failed_jobs=[], summary="-", at=T0)
    assert deploys.apply(failing("report"), gathered).actions == [SendCallback()]
    record = failing()
    assert record.run is not None
    record.run.conclusion = "cancelled"
    assert deploys.apply(record, gathered).actions == [SendCallback()]


def test_superseded_reasons() -> None:
    record = failing("report")
    assert record.run is not None
    record.run.conclusion = "cancelled"
    marked = deploys.apply(record, Superseded("dep_new", T0)).record
    verdict = deploys.apply(marked, FailureGathered([], "-", T0)).record.verdict
    assert verdict is not None and verdict.reason == "superseded"
    annotation = Annotation(path=".github", message="Canceling since a higher priority "
                            "waiting request for 'deploy-production' exists")
    job = FailedJob(id=1, name="deploy", conclusion="cancelled", annotations=[annotation])
    verdict = deploys.apply(record, FailureGathered([job], "-", T0)).record.verdict
    assert verdict is not None and verdict.reason == "superseded"
    unbound = deploys.new_deployment(
        "dep_2", DeploymentRequest(repository="acme/shop"), ref="main", callback_url=None,
        installation_id=1, run_id=None, html_url=None, now=T0,
    )
    ended = deploys.apply(unbound, Superseded("dep_new", T0)).record
    assert ended.verdict is not None and ended.verdict.reason == "superseded"
