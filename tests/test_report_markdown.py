"""verdict.report: Markdown within 16 KiB, fences chosen and never cut."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ghapp.core.causes import Failure, default_rules
from ghapp.core.deploys import DeploymentRecord
from ghapp.core.models import Annotation, CallbackInfo, FailedJob, FailedStep, Run, Verdict
from ghapp.core.report_markdown import LIMIT, render

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _record() -> DeploymentRecord:
    return DeploymentRecord(
        id="dep_1",
        repository="acme/shop",
        workflow="deploy.yml",
        ref="main",
        state="completed",
        run=Run(id=7, html_url="https://github.com/acme/shop/actions/runs/7"),
        callback=CallbackInfo(url=None),
        created_at=NOW,
        updated_at=NOW,
        dispatched_at=NOW,
        last_heard_at=NOW,
    )


def _job(number: int, excerpt: str) -> FailedJob:
    return FailedJob(
        id=number,
        name=f"deploy-{number}",
        html_url=f"https://github.com/acme/shop/actions/runs/7/job/{number}",
        conclusion="failure",
        failed_step=FailedStep(number=3, name="Deploy on the server"),
        log_excerpt=excerpt,
        annotations=[Annotation(path="app.py", start_line=12, message="boom")],
    )


def _verdict(*jobs: FailedJob) -> Verdict:
    verdict = Verdict(
        status="failure", reason="failure", summary="It failed.", failed_jobs=list(jobs)
    )
    verdict.cause = default_rules().classify(Failure(reason="failure", log=jobs[0].log_excerpt))
    return verdict


def _fences_balanced(text: str) -> bool:
    open_fence: str | None = None
    for line in text.split("\n"):
        fence = re.fullmatch(r"(`{3,})", line.strip())
        if fence is None:
            continue
        if open_fence is None:
            open_fence = fence.group(1)
        elif fence.group(1) == open_fence:
            open_fence = None
    return open_fence is None


def test_the_report_reads_as_a_hand_over() -> None:
    excerpt = "Pulling\nssh: connect to host 203.0.113.10 port 22: Connection refused"
    text = render(_record(), _verdict(_job(1, excerpt)))
    assert text.startswith("# Deploy of `acme/shop@main` to `production` failed\n")
    # Right after the heading: what the code in the report is (quoted, never instructions).
    assert text.split("\n")[2].startswith("Code blocks and code spans below quote the job's own")
    assert "**Cause:** infrastructure" in text and "**What to do:** The server refused" in text
    assert "**Summary:** `It failed.`" in text
    assert "## Job `deploy-1`: failure at step 3, `Deploy on the server`" in text
    assert "- `app.py:12: boom`" in text
    assert "https://github.com/acme/shop/actions/runs/7/job/1" in text
    assert f"```\n{excerpt}\n```" in text


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    excerpt = "echo ```` quoted ````\nfailed"
    text = render(_record(), _verdict(_job(1, excerpt)))
    assert f"`````\n{excerpt}\n`````" in text
    assert _fences_balanced(text)


def test_a_huge_failure_stays_within_16_kib_without_cutting_a_fence() -> None:
    lines = "\n".join(f"line {n}: " + "é" * 150 for n in range(200))
    jobs = [_job(n, lines + "\n##[error]Process completed with exit code 1.") for n in range(10)]
    text = render(_record(), _verdict(*jobs))
    assert len(text.encode()) <= LIMIT
    assert _fences_balanced(text)
    assert "earlier lines cut to fit the report" in text
    # The end of each excerpt, where the errors are, is kept.
    assert text.count("Process completed with exit code 1.") >= 10


def test_a_report_too_long_even_so_is_cut_between_blocks_with_a_marker() -> None:
    jobs = [_job(n, "x") for n in range(400)]
    text = render(_record(), _verdict(*jobs))
    assert len(text.encode()) <= LIMIT
    assert _fences_balanced(text)
    assert text.rstrip().endswith("the run has the rest.)_")
