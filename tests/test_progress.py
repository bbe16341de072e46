"""The pure progress decisions: job reports merged, never backwards; the start announced once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ghapp.core import deploys
from ghapp.core.deploys import RunObserved, SendStarted
from ghapp.core.models import DeploymentRequest, ProgressJob, ProgressStep
from ghapp.core.progress import JobObserved, job_of, median

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = 77


def record(notify: bool = True, typical: float | None = None) -> deploys.DeploymentRecord:
    request = DeploymentRequest(
        repository="acme/shop", notify=["deployment.started"] if notify else []
    )
    return deploys.new_deployment(
        "dep_1",
        request,
        ref="main",
        callback_url="http://orch.test/cb",
        installation_id=1,
        run_id=RUN,
        html_url=None,
        now=T0,
        typical_run_seconds=typical,
    )


def job(
    status: str, steps: list[tuple[str, str | None]], conclusion: str | None = None
) -> ProgressJob:
    return ProgressJob(
        id=5,
        name="deploy",
        status=status,
        conclusion=conclusion,
        started_at=T0 + timedelta(seconds=3) if status != "queued" else None,
        steps=[
            ProgressStep(number=n + 1, name=f"s{n + 1}", status=s, conclusion=c)
            for n, (s, c) in enumerate(steps)
        ],
    )


def observed(*jobs: ProgressJob, seconds: float = 1) -> JobObserved:
    return JobObserved(run_id=RUN, attempt=1, jobs=jobs, at=T0 + timedelta(seconds=seconds))


DONE = ("completed", "success")
RUNNING = ("in_progress", None)
QUEUED = ("queued", None)


def test_late_and_repeated_job_reports_never_move_anything_backwards() -> None:
    ahead = job("in_progress", [DONE, DONE, RUNNING, QUEUED])
    after = deploys.apply(record(), observed(ahead)).record
    assert after.progress is not None
    assert (after.progress.steps_completed, after.progress.steps_total) == (2, 4)
    # The `queued` report (no steps) and an older `in_progress` one arrive late.
    for late in (job("queued", []), job("in_progress", [RUNNING])):
        again = deploys.apply(after, observed(late, seconds=2))
        assert again.record.progress == after.progress
    done = job("completed", [DONE, DONE, DONE, DONE], conclusion="success")
    final = deploys.apply(after, observed(done, seconds=3)).record
    stale = deploys.apply(final, observed(ahead, seconds=4)).record
    assert stale.progress == final.progress
    assert final.progress is not None and final.progress.jobs[0].conclusion == "success"
    assert final.progress.steps_completed == 4


def test_the_start_is_announced_once_whoever_reports_it() -> None:
    first = deploys.apply(record(), observed(job("in_progress", [RUNNING])))
    assert first.record.state == "in_progress" and first.actions == [SendStarted()]
    assert first.record.run is not None and first.record.run.status == "in_progress"
    run = RunObserved(RUN, 1, "in_progress", None, None, "abc", T0 + timedelta(seconds=2))
    assert deploys.apply(first.record, run).actions == []
    # The other way round: the run's webhook first, then the job's.
    by_run = deploys.apply(record(), run)
    assert by_run.actions == [SendStarted()]
    assert deploys.apply(by_run.record, observed(job("in_progress", [RUNNING]))).actions == []
    # Not asked for: nothing sent.
    assert deploys.apply(record(notify=False), run).actions == []


def test_no_start_announced_when_the_completion_comes_first() -> None:
    done = RunObserved(RUN, 1, "completed", "success", None, "abc", T0)
    transition = deploys.apply(record(), done)
    assert not any(isinstance(a, SendStarted) for a in transition.actions)


def test_estimate_is_the_runs_start_plus_the_typical_run() -> None:
    start = T0 + timedelta(seconds=5)
    run = RunObserved(RUN, 1, "in_progress", None, None, "abc", T0, started_at=start)
    after = deploys.apply(record(typical=90.0), run).record
    assert after.progress is not None
    assert after.progress.estimated_completion_at == start + timedelta(seconds=90)
    without = deploys.apply(record(), run).record
    assert without.progress is not None and without.progress.estimated_completion_at is None
    assert median([30.0, 10.0, 20.0]) == 20.0 and median([1.0, 2.0]) == 1.5
    assert median([]) is None


def test_github_job_payloads_parse(reference: Path) -> None:
    for path in sorted((reference / "webhooks").glob("workflow_job.*.json")):
        payload = json.loads(path.read_text())
        parsed = job_of(payload["workflow_job"])
        assert parsed is not None, path.name
        assert parsed.status == payload["workflow_job"]["status"]
        assert len(parsed.steps) == len(payload["workflow_job"]["steps"])
    assert job_of({"id": "not a number"}) is None
