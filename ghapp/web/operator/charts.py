"""Charts of the operator page, drawn on the server as SVG (no script, no chart library).

Pure functions from numbers to markup; every text that reaches the SVG is escaped. Only
presentation attributes are used (the page's Content-Security-Policy forbids inline styles)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 12, 28
SUCCESS, FAILURE, LINE, GRID, TEXT = "#1a7f37", "#cf222e", "#0969da", "#d0d7de", "#57606a"


@dataclass(frozen=True)
class Day:
    """One day of deployments: its label (YYYY-MM-DD), outcomes and mean duration."""

    label: str
    successes: int
    failures: int
    mean_duration: float | None


def _nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _frame(title: str, top: float, unit: str, labels: Sequence[str]) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        value = top * i / 4
        shown = f"{value:g}" if value < 1000 else f"{value / 1000:g}k"
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{TEXT}">{escape(shown)}{escape(unit)}</text>'
        )
    if labels:
        step = max(1, len(labels) // 6)
        slot = plot_w / len(labels)
        for i in range(0, len(labels), step):
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
                f'fill="{TEXT}">{escape(labels[i][5:])}</text>'
            )
    return parts


def deployments_per_day(days: Sequence[Day]) -> str:
    """Stacked bars: successes below, failures above, one bar a day."""
    top = _nice_ceiling(max((d.successes + d.failures for d in days), default=0))
    parts = _frame("Deployments per day (success, failure)", top, "", [d.label for d in days])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar) / 2
        base = float(TOP + plot_h)
        for count, colour, kind in ((day.successes, SUCCESS, "success"),
                                    (day.failures, FAILURE, "failure")):
            if not count:
                continue
            height = plot_h * count / top
            base -= height
            parts.append(
                f'<rect class="bar {kind}" x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}">'
                f"<title>{escape(day.label)}: {count} {kind}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def duration_over_time(days: Sequence[Day]) -> str:
    """A line of each day's mean duration (dispatch to verdict), in seconds."""
    timed = [(i, d) for i, d in enumerate(days) if d.mean_duration is not None]
    top = _nice_ceiling(max((d.mean_duration or 0 for _, d in timed), default=0))
    parts = _frame("Mean duration per day", top, "s", [d.label for d in days])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    points = [
        (LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * (d.mean_duration or 0) / top, d)
        for i, d in timed
    ]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>'
        )
    for x, y, day in points:
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{LINE}">'
            f"<title>{escape(day.label)}: {day.mean_duration or 0:.0f} s</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
