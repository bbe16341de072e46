"""Failure reports: which jobs count as failed, their failing step, the summary line."""

from __future__ import annotations

from typing import Any

from ghapp.core.models import FailedJob, FailedStep
from ghapp.core.reports import failed_job, failed_jobs_of, failed_step_of, job_summary, run_summary


def step(number: int, name: str, conclusion: str | None) -> dict[str, Any]:
    return {"number": number, "name": name, "conclusion": conclusion}


def job(name: str, conclusion: str | None, step_name: str | None = "Deploy") -> FailedJob:
    failed = FailedStep(number=3, name=step_name) if step_name else None
    return FailedJob(id=1, name=name, conclusion=conclusion, failed_step=failed)


def test_failed_step_is_the_first_failed_or_cancelled_by_number() -> None:
    steps = [step(3, "c", "cancelled"), step(1, "a", "success"), step(2, "b", "failure")]
    found = failed_step_of(steps)
    assert found is not None and found["number"] == 2
    assert failed_step_of([step(1, "a", "success"), step(2, "b", "skipped")]) is None
    assert failed_step_of([]) is None and failed_step_of(None) is None


def test_reported_jobs_exclude_success_skipped_neutral() -> None:
    jobs = [
        {"id": n, "name": str(n), "conclusion": c}
        for n, c in enumerate(
            ["success", "skipped", "neutral", "failure", "cancelled", "timed_out"]
        )
    ]
    assert [j["conclusion"] for j in failed_jobs_of(jobs)] == ["failure", "cancelled", "timed_out"]


def test_failed_job_from_the_api_object() -> None:
    api_job = {
        "id": 77,
        "name": "deploy (eu, 3.11)",
        "html_url": "https://github.com/a/b/actions/runs/1/job/77",
        "conclusion": "failure",
        "steps": [step(1, "Set up job", "success"), step(2, "Push", "failure")],
    }
    report = failed_job(api_job)
    assert report.name == "deploy (eu, 3.11)"
    assert report.failed_step == FailedStep(number=2, name="Push")
    assert report.log_excerpt == "" and report.annotations == []


def test_job_summary_says_how_where_and_why() -> None:
    assert (
        job_summary(
            job("deploy", "failure", "Deploy over SSH"), "Process completed with exit code 255."
        )
        == "Job `deploy` failed at step `Deploy over SSH`: `Process completed with exit code 255.`"
    )
    assert job_summary(job("deploy", "timed_out", "Run tests"), "exceeded").startswith(
        "Job `deploy` timed out at step `Run tests`: `exceeded`"
    )
    assert (
        job_summary(job("deploy", "cancelled", "Build"), "The operation was canceled.")
        == "Job `deploy` was cancelled at step `Build`: `The operation was canceled.`"
    )
    assert job_summary(job("deploy", "failure", None), None) == (
        "Job `deploy` failed before any step ran."
    )
    assert job_summary(job("deploy", "failure", "X"), "  ") == "Job `deploy` failed at step `X`."


def test_summary_is_one_clean_line() -> None:
    flat = job_summary(job("d", "failure", "X"), "first\nsecond \x1b[31mred\x1b[0m " + "y" * 500)
    assert "\n" not in flat and "\x1b" not in flat and len(flat) < 360
    assert "first second red" in flat


def test_run_summary_counts_the_other_failed_jobs() -> None:
    jobs = [job("a", "failure"), job("b", "failure")]
    line = run_summary("failure", jobs, ["boom", None], omitted=3)
    assert line == "Job `a` failed at step `Deploy`: `boom` (4 other jobs failed too.)"
    assert "no job failed" in run_summary("cancelled", [], [])
