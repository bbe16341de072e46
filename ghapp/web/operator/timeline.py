"""A run's jobs and steps on a time line, drawn on the server as SVG (like the charts).

Each bar starts and ends at GitHub's own `started_at`/`completed_at` of its job or step; one
still running ends at `now`. Pure function from the progress to markup; every name is escaped
and cut to fit its column (the whole name stays in the bar's tooltip). Presentation attributes
only: the page's Content-Security-Policy forbids inline styles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from ghapp.core.models import ProgressJob

WIDTH = 1000
LABEL, RIGHT, TOP, AXIS, ROW = 270, 64, 6, 26, 20
MAX_ROWS = 300
NAME_CHARS = 40
TEXT, GRID = "#57606a", "#d0d7de"
COLOURS = {
    "success": "#1a7f37",
    "failure": "#cf222e",
    "timed_out": "#cf222e",
    "startup_failure": "#cf222e",
    "cancelled": "#6e7781",
    "skipped": "#afb8c1",
    "neutral": "#8c959f",
    "in_progress": "#0969da",
}
# Tick spacing in seconds: the first that leaves at most 8 ticks on the axis.
TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200)


@dataclass(frozen=True)
class Bar:
    """One row: a job or one of its steps, with GitHub's times (None: not started or ended)."""

    label: str
    kind: str  # "job" or "step"
    state: str  # the conclusion once completed, else the status
    started: datetime | None
    completed: datetime | None


def short_duration(seconds: float) -> str:
    """A duration as `7s`, `4m 05s` or `1h 02m`."""
    minutes, secs = divmod(max(round(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def bars_of(jobs: Sequence[ProgressJob]) -> list[Bar]:
    """The rows of the time line: each job, then its steps in order."""
    bars = []
    for job in jobs:
        state = job.conclusion if job.status == "completed" else job.status
        # GitHub gives a job waiting for a runner a `started_at` already (its creation): only
        # a job that runs or ran gets a bar.
        started = job.started_at if job.status in ("in_progress", "completed") else None
        bars.append(Bar(job.name, "job", state or job.status, started, job.completed_at))
        for step in job.steps:
            state = step.conclusion if step.status == "completed" else step.status
            label = f"{step.number}. {step.name}"
            bars.append(
                Bar(label, "step", state or step.status, step.started_at, step.completed_at)
            )
    return bars[:MAX_ROWS]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tick(span: float) -> int:
    return next((step for step in TICKS if span / step <= 8), TICKS[-1])


def draw(jobs: Sequence[ProgressJob], now: datetime) -> str:
    """The SVG of the jobs and steps; empty when no job has started yet. Bars still running
    end at `now` (or at the latest time GitHub reported, if later)."""
    bars = bars_of(jobs)
    starts = [bar.started for bar in bars if bar.started is not None]
    if not starts:
        return ""
    origin = min(starts)
    # What still runs ends "now", and never before a time GitHub already reported: its clock
    # and this server's need not agree.
    known = [moment for bar in bars for moment in (bar.started, bar.completed) if moment]
    now = max([now, *known])
    ends = [bar.completed or now for bar in bars if bar.started is not None]
    span = max(max((end - origin).total_seconds() for end in ends), 1.0)
    plot = WIDTH - LABEL - RIGHT
    height = TOP + ROW * len(bars) + AXIS
    title = "Jobs and steps on a time line"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{title}">',
        f"<title>{title}</title>",
    ]
    step = _tick(span)
    for index in range(int(span // step) + 1):
        x = LABEL + plot * index * step / span
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{height - AXIS + 4}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="11" '
            f'fill="{TEXT}">{escape(short_duration(index * step))}</text>'
        )
    for row, bar in enumerate(bars):
        y = TOP + ROW * row
        indent = 4 if bar.kind == "job" else 18
        weight = ' font-weight="600"' if bar.kind == "job" else ""
        parts.append(
            f'<text x="{indent}" y="{y + 14}" font-size="12" fill="#1f2328"{weight}>'
            f"{escape(_cut(bar.label, NAME_CHARS - indent // 6))}"
            f"<title>{escape(bar.label)}</title></text>"
        )
        if bar.started is None:
            parts.append(
                f'<text x="{LABEL + 4}" y="{y + 14}" font-size="11" fill="{TEXT}">'
                f"{escape(bar.state)}</text>"
            )
            continue
        end = bar.completed or now
        seconds = max((end - bar.started).total_seconds(), 0.0)
        x = LABEL + plot * (bar.started - origin).total_seconds() / span
        width = max(plot * seconds / span, 2.0)
        colour = COLOURS.get(bar.state, COLOURS["neutral"])
        bar_height = 14 if bar.kind == "job" else 10
        running = " running" if bar.completed is None else ""
        tooltip = f"{bar.label}: {bar.state}, {short_duration(seconds)}"
        parts.append(
            f'<rect class="bar {bar.kind} {escape(bar.state)}{running}" x="{x:.1f}" '
            f'y="{y + (ROW - bar_height) / 2:.1f}" width="{width:.1f}" height="{bar_height}" '
            f'rx="2" fill="{colour}"><title>{escape(tooltip)}</title></rect>'
            f'<text x="{x + width + 4:.1f}" y="{y + 14}" font-size="11" fill="{TEXT}">'
            f"{escape(short_duration(seconds))}{'…' if running else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
