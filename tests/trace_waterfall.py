"""A trace's spans as an SVG waterfall (one bar per span under its parent, on the root's time
axis): the picture in docs/traces-and-outputs.md is drawn by it from a test's collected spans."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

ROW = 22
LABEL = 260
WIDTH = 900
PAD = 10


def _ordered(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Depth-first from the root (the span whose parent is not in the trace), by start."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent"] if span["parent"] in ids else None
        children.setdefault(parent, []).append(span)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s["start"], s["name"])):
            out.append((depth, span))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return out


def waterfall_svg(spans: list[dict[str, Any]]) -> str:
    """The SVG document."""
    rows = _ordered(spans)
    begin = min(s["start"] for s in spans)
    end = max(s["end"] for s in spans)
    scale = (WIDTH - LABEL - 2 * PAD) / max(end - begin, 1)
    height = ROW * (len(rows) + 1) + 2 * PAD
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="{PAD}" y="{PAD + 12}" font-weight="bold">one deployment\'s trace '
        f'({(end - begin) / 1e9:.2f} s)</text>',
    ]
    for index, (depth, span) in enumerate(rows, start=1):
        y = PAD + index * ROW
        x = LABEL + PAD + (span["start"] - begin) * scale
        width = max((span["end"] - span["start"]) * scale, 1.5)
        color = "#d9534f" if span.get("status") == 2 else ("#4a7bd0" if depth else "#2c3e50")
        seconds = (span["end"] - span["start"]) / 1e9
        parts.append(
            f'<text x="{PAD + depth * 14}" y="{y + 14}">{escape(span["name"][:40])}</text>'
            f'<rect x="{x:.1f}" y="{y + 4}" width="{width:.1f}" height="{ROW - 8}" '
            f'fill="{color}" rx="2"><title>{escape(span["name"])}: {seconds:.3f} s</title></rect>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
