"""The pure parts of the deployment page: the report's safe rendering, the marked excerpt, the
time line's SVG, release labels, and GitHub's step times kept in the progress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from ghapp.core.models import Progress, ProgressJob, ProgressStep, Release
from ghapp.core.progress import job_of, merge
from ghapp.web.operator import timeline
from ghapp.web.operator.render import release_label, short_sha
from ghapp.web.operator.report_html import excerpt_html, inline_html, report_html

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# A report as a hostile log could make it if the quoting ever failed, and worse: raw HTML
# blocks and inline tags, script and data links, an image, an autolink, a reference link, an
# escape sequence. Whatever the report holds, the page must show it as text.
CRAFTED_REPORT = """# Deploy of `acme/web@main` failed

<script>alert(1)</script>

<div onmouseover="alert(2)">block</div>

Inline <img src=x onerror=alert(3)> and <a href="javascript:alert(4)">a tag</a>.

[a link](javascript:alert(5)) [data](data:text/html;base64,PHNjcmlwdD4=) <javascript:alert(6)>
[ref][r] ![image](https://evil.example/pixel.png) \x1b]8;;https://evil.example\x07osc\x1b]8;;\x07

[r]: vbscript:msgbox(7)

[GitHub](https://github.com/acme/web/actions/runs/1)

```
<b>in a fence</b>
```
"""


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_a_crafted_report_renders_as_text_with_only_safe_elements() -> None:
    html = str(report_html(CRAFTED_REPORT))
    tags = tags_of(html)
    allowed = {"h1", "h2", "h3", "p", "code", "pre", "ul", "ol", "li", "strong", "em", "a"}
    assert {tag for tag, _ in tags} <= allowed, tags
    # Only http(s) links became links (the image, off, is left a plain link); the rest text.
    links = [attrs for tag, attrs in tags if tag == "a"]
    assert [a["href"] for a in links] == [
        "https://evil.example/pixel.png", "https://github.com/acme/web/actions/runs/1"
    ]
    assert {a["rel"] for a in links} == {"noreferrer noopener"}
    assert not [attrs for _, attrs in tags if any(k.startswith("on") for k in attrs)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(3)&gt;" in html
    assert "&lt;b&gt;in a fence&lt;/b&gt;" in html
    assert "\x1b" not in html and "\x07" not in html
    assert "javascript:" not in "".join(str(a.get("href")) for _, a in tags)
    assert report_html(None) == "" and report_html("") == ""


def test_the_summary_renders_its_code_spans_and_nothing_else() -> None:
    html = str(inline_html("Job `deploy` failed at `<script>`: <b>x</b> [y](javascript:z)"))
    assert html.startswith("Job <code>deploy</code> failed at <code>&lt;script&gt;</code>")
    assert "<b>" not in html and "href" not in html


def test_the_excerpt_marks_its_error_lines_and_escapes_the_rest() -> None:
    excerpt = "\n".join(
        [
            "##[group]Run ./deploy.sh",
            "<img src=x onerror=alert(1)>",
            "\x1b[31mred\x1b[0m",
            "  ##[error]ssh: connect to host 203.0.113.10 port 22: Connection refused",
            "##[warning]Node 16 is deprecated",
            "##[error]Process completed with exit code 255.",
        ]
    )
    html = str(excerpt_html(excerpt))
    marked = [attrs.get("class") for tag, attrs in tags_of(html) if tag == "mark"]
    assert marked == ["error-line", "warning-line", "error-line"]
    assert [tag for tag, _ in tags_of(html)] == ["mark", "mark", "mark"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\nred\n" in html
    last = '<mark class="error-line">##[error]Process completed with exit code 255.</mark>'
    assert html.endswith(last)


def _step(number: int, status: str, start: float | None, end: float | None,
          conclusion: str | None = None, name: str | None = None) -> ProgressStep:
    return ProgressStep(
        number=number,
        name=name or f"step {number}",
        status=status,
        conclusion=conclusion,
        started_at=None if start is None else T0 + timedelta(seconds=start),
        completed_at=None if end is None else T0 + timedelta(seconds=end),
    )


def test_the_time_line_places_each_bar_at_githubs_times() -> None:
    job = ProgressJob(
        id=1, name="deploy <b>prod</b>", status="in_progress",
        started_at=T0, steps=[
            _step(1, "completed", 0, 10, "success"),
            _step(2, "completed", 10, 40, "failure", name="x" * 200),
            _step(3, "in_progress", 40, None),
            _step(4, "queued", None, None),
        ],
    )
    waiting = ProgressJob(id=2, name="smoke", status="queued", started_at=T0, steps=[])
    svg = timeline.draw([job, waiting], now=T0 + timedelta(seconds=100))
    rects = [a for tag, a in tags_of(svg) if tag == "rect"]
    by_class = {str(a["class"]): a for a in rects}
    # The plot is WIDTH - LABEL - RIGHT wide and spans 0..100 s here.
    plot = timeline.WIDTH - timeline.LABEL - timeline.RIGHT
    first = by_class["bar step success"]
    assert float(str(first["x"])) == timeline.LABEL
    assert abs(float(str(first["width"])) - plot * 0.10) < 0.2
    failed = by_class["bar step failure"]
    assert abs(float(str(failed["x"])) - (timeline.LABEL + plot * 0.10)) < 0.2
    assert abs(float(str(failed["width"])) - plot * 0.30) < 0.2
    # The running step reaches `now`; the queued step and the queued job get no bar.
    running = by_class["bar step in_progress running"]
    assert abs(float(str(running["width"])) - plot * 0.60) < 0.2
    assert len(rects) == 4  # the job, three of its steps
    assert "<b>" not in svg and "&lt;b&gt;prod&lt;/b&gt;" in svg
    assert "x" * 200 in svg  # whole in the tooltip, cut in the label
    assert ">2. " + "x" * 33 + "…<title>2. " + "x" * 200 + "</title>" in svg
    assert timeline.draw([waiting], now=T0) == ""


def test_step_times_come_from_githubs_payloads_in_utc(reference: Path) -> None:
    payload = json.loads((reference / "webhooks" / "workflow_job.completed.0.json").read_text())
    job = job_of(payload["workflow_job"])
    assert job is not None
    raw = payload["workflow_job"]["steps"][0]
    started = datetime.fromisoformat(raw["started_at"].replace("Z", "+00:00"))
    assert job.steps[0].started_at == started
    assert job.steps[0].completed_at is not None
    # The jobs API writes step times in its own zone: kept as the same moment, in UTC.
    rest = job_of({"id": 3, "name": "deploy", "status": "in_progress", "steps": [
        {"number": 1, "name": "Set up job", "status": "completed", "conclusion": "success",
         "started_at": "2026-12-01T05:00:00.000-07:00",
         "completed_at": "2026-12-01T05:00:04.000-07:00"},
        {"number": 2, "name": "Deploy", "status": "in_progress", "conclusion": None,
         "started_at": "not a time", "completed_at": None},
    ]})
    assert rest is not None
    assert rest.steps[0].started_at == T0 and rest.steps[0].started_at.tzinfo == UTC
    assert rest.steps[1].started_at is None and rest.steps[1].status == "in_progress"


def test_a_report_without_step_times_never_erases_them() -> None:
    steps = [_step(1, "completed", 0, 5, "success"), _step(2, "in_progress", 5, None)]
    timed = ProgressJob(id=1, name="deploy", status="in_progress", started_at=T0, steps=steps)
    first = merge(Progress(), [timed])
    # A later report of the same steps without their times (an older payload shape).
    bare = timed.model_copy(update={"steps": [
        ProgressStep(number=1, name="step 1", status="completed", conclusion="success"),
        ProgressStep(number=2, name="step 2", status="completed", conclusion="success"),
    ]})
    after = merge(first, [bare]).jobs[0].steps
    assert after[0].started_at == T0 and after[0].completed_at == T0 + timedelta(seconds=5)
    assert after[1].status == "completed" and after[1].started_at == T0 + timedelta(seconds=5)
    # A late `in_progress` report after the end keeps the end.
    late = merge(merge(first, [timed.model_copy(update={"steps": [
        _step(2, "completed", 5, 9, "success")]})]), [timed]).jobs[0].steps
    assert late[1].status == "completed" and late[1].completed_at == T0 + timedelta(seconds=9)


def test_releases_are_named_by_version_or_short_sha() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    made = dict(deployment_id="dep_1", ref="main", head_sha=sha, released_at=T0)
    assert release_label(Release(version=sha, **made)) == "0123456"
    assert release_label(Release(version="v1.2.3", **made)) == "v1.2.3"
    assert release_label(Release(version="v" + "9" * 40, **made)) == "v" + "9" * 22 + "…"
    assert release_label(Release(version=None, **{**made, "head_sha": None})) == "previous"
    assert short_sha(sha) == "0123456" and short_sha("main") == "main"


def test_a_job_starts_when_its_runner_does_not_when_it_was_queued() -> None:
    # GitHub's queued report carries the job's creation as `started_at`; the in_progress one
    # the runner's start (the recorded payloads: 03:31:29 queued, 03:31:36 running).
    queued = ProgressJob(id=1, name="deploy", status="queued", started_at=T0)
    running = queued.model_copy(
        update={"status": "in_progress", "started_at": T0 + timedelta(seconds=7)}
    )
    progress = merge(merge(Progress(), [queued]), [running])
    assert progress.jobs[0].started_at == T0 + timedelta(seconds=7)
    # A late queued report never moves it back.
    assert merge(progress, [queued]).jobs[0].started_at == T0 + timedelta(seconds=7)


def test_a_running_bar_reaches_the_latest_time_github_reported() -> None:
    # GitHub's clock ahead of this server's: a step reported done at +30 s, "now" is +5 s.
    job = ProgressJob(id=1, name="deploy", status="in_progress", started_at=T0, steps=[
        _step(1, "completed", 0, 30, "success"),
        _step(2, "in_progress", 30, None),
    ])
    svg = timeline.draw([job], now=T0 + timedelta(seconds=5))
    rects = {str(a["class"]): a for tag, a in tags_of(svg) if tag == "rect"}
    plot = timeline.WIDTH - timeline.LABEL - timeline.RIGHT
    assert abs(float(str(rects["bar job in_progress running"]["width"])) - plot) < 0.2
