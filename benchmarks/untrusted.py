"""Time to clean remote text (``ghapp.core.untrusted.clean``): linear in the text, crafted or not.

Method: texts of 32 KiB (an excerpt's bound) and 1 MiB, made of one pattern repeated: ``plain``
log lines (no control character: the fast path), ``coloured`` lines (an SGR sequence every few
words, as GitHub's logs are), and crafted ones that would make a backtracking pattern rescan:
``csi-no-final`` (``ESC [`` and a thousand parameters, never a final byte), ``osc-no-end`` (an
OSC string cut by a lone ESC), ``lone-esc`` (ESC after ESC), ``control-letter`` (a control
every other character: the most matches a text can hold), ``esc-spaces`` (ESC and a thousand
intermediates, no final), ``esc-esc-osc`` (``ESC ESC ]``), ``redraws`` (a progress line redrawn
with CRs). Each figure is the best of 5 rounds (``time.perf_counter``), as microseconds per KiB.
The reference measured side by side is one linear pass of Python's ``re`` removing every control
character from the same text, one at a time (its output is made of as many pieces, so it pays
the same allocation costs, which grow somewhat with size on their own). Linear time shows as
``growth``: clean's per-KiB cost at 1 MiB over its cost at 32 KiB, divided by the reference's
same ratio (about 1 when linear; a quadratic cleaner would show ~32).

Usage: ``python -m benchmarks.untrusted [--json out.json]``; ``python -m benchmarks --only
untrusted``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import row
from ghapp.core.untrusted import clean

NAME = "untrusted"
ROUNDS = 5
GROWTH_TARGET = 2.0  # clean's growth from 32 KiB to 1 MiB over the reference's (linear: ~1)
PATTERNS = {
    "plain": "#12 3.913 > tsc -p . && vite build  (cached layer sha256:0f3a9c) ok\n",
    "coloured": "\x1b[36;1mdocker\x1b[0m build \x1b[32mOK\x1b[0m step \x1b[1m3/9\x1b[0m\n",
    "csi-no-final": "\x1b[" + "0;" * 1000,
    "osc-no-end": "\x1b]0;" + "title " * 200 + "\x1b",
    "lone-esc": "\x1b",
    "control-letter": "\x07a",
    "esc-spaces": "\x1b" + " " * 1000,
    "esc-esc-osc": "\x1b\x1b]52;c;ZXZpbA==\x07",
    "redraws": "progress 42%\r" * 50 + "\n",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text_of(pattern: str, size: int) -> str:
    """`pattern` repeated to `size` characters."""
    return (pattern * (size // len(pattern) + 1))[:size]


def best(work: Callable[[], object]) -> float:
    """The best of ROUNDS timings of `work`, in seconds."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(sizes: list[int]) -> list[dict[str, Any]]:
    """Per pattern and size: microseconds per KiB for `clean` and for the reference."""
    results = []
    for name, pattern in PATTERNS.items():
        for size in sizes:
            text = text_of(pattern, size)
            spent = best(lambda text=text: clean(text))  # type: ignore[misc]
            reference = best(lambda text=text: _CONTROL.sub("", text))  # type: ignore[misc]
            results.append(
                {
                    "pattern": name,
                    "size_kib": size // 1024,
                    "clean_us_per_kib": round(spent * 1e6 / (size / 1024), 2),
                    "reference_us_per_kib": round(reference * 1e6 / (size / 1024), 2),
                }
            )
    return results


def rows_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: each pattern's cost at each size, and its growth from smallest to largest."""
    rows = []
    for name in PATTERNS:
        mine = [r for r in results if r["pattern"] == name]
        for r in mine:
            rows.append(row(
                f"{name}, {r['size_kib']} KiB", r["clean_us_per_kib"], "us/KiB",
                f"reference {r['reference_us_per_kib']} us/KiB",
            ))
        if len(mine) > 1:
            first, last = mine[0], mine[-1]
            growth = (last["clean_us_per_kib"] / max(first["clean_us_per_kib"], 1e-9)) / (
                last["reference_us_per_kib"] / max(first["reference_us_per_kib"], 1e-9)
            )
            rows.append(row(
                f"{name}: growth {first['size_kib']} -> {last['size_kib']} KiB (vs reference)",
                round(growth, 2), "x", f"<= {GROWTH_TARGET:g}", growth <= GROWTH_TARGET,
            ))
    return rows


async def run(quick: bool, _tmp: Path) -> dict[str, Any]:
    """The benchmark as `python -m benchmarks` runs it."""
    sizes = [32 * 1024, 128 * 1024] if quick else [32 * 1024, 1024 * 1024]
    results = await asyncio.to_thread(measure, sizes)
    return {"sizes_kib": [s // 1024 for s in sizes], "results": results, "rows": rows_of(results)}


def main(argv: list[str] | None = None) -> int:
    """Run on its own and print the table (and the JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.untrusted")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = asyncio.run(run(False, Path(".")))
    for r in result["rows"]:
        print(f"{r['metric']:<40} {r['value']:>10} {r['unit']:<7} {r['target']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
