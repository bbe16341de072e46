"""The benchmark suite: `python -m benchmarks [--quick] [--only NAME,...] [--json FILE]`.

Runs each benchmark (its method is in its module's docstring), prints one table and writes the
numbers as JSON with the date and the machine (cores, CPU model, Python, git commit). `--quick`
is the CI smoke version: tiny sizes, the benchmarks side by side, well under a minute, no
assertion on speed. The exit status is 1
when a benchmark failed to run (never because a target was missed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import (
    access,
    causes,
    economy,
    gate,
    ingest,
    latency,
    log_excerpt,
    memory,
    metadata,
    reconcile,
    sandbox,
    scale,
    soak,
    stats,
    streams,
    takeover,
    untrusted,
)
from benchmarks._common import CHILDREN, machine, row

Runner = Callable[[bool, Path], Awaitable[dict[str, Any]]]
EXCERPT_SPEED_TARGET = 200.0  # MiB/s
EXCERPT_MEMORY_TARGET = 16.0  # MiB


async def excerpt(quick: bool, _tmp: Path) -> dict[str, Any]:
    """The log-excerpt benchmark (`benchmarks.log_excerpt`), with rows against the targets."""
    sizes = [1] if quick else [1, 10, 100]
    results = await asyncio.to_thread(log_excerpt.run, sizes, repeats=1 if quick else 3)
    largest = max(sizes)
    rows = []
    for r in results:
        judged = r["size_mib"] == 100
        rows.append(row(
            f"{r['size_mib']} MiB log, {r['scenario']}: speed", r["mib_per_s"], "MiB/s",
            f">= {EXCERPT_SPEED_TARGET:g}" if judged else "",
            r["mib_per_s"] >= EXCERPT_SPEED_TARGET if judged else None,
        ))
        if r["size_mib"] == largest:
            growth = max(r["tracemalloc_peak_mib"], r["rss_growth_mib"])
            rows.append(row(
                f"{r['size_mib']} MiB log, {r['scenario']}: peak memory growth", growth, "MiB",
                f"<= {EXCERPT_MEMORY_TARGET:g}" if judged else "",
                growth <= EXCERPT_MEMORY_TARGET if judged else None,
            ))
    return {"sizes_mib": sizes, "results": results, "rows": rows}


BENCHMARKS: dict[str, Runner] = {
    ingest.NAME: ingest.run,
    latency.NAME: latency.run,
    economy.NAME: economy.run,
    "log_excerpt": excerpt,
    causes.NAME: causes.run,
    scale.NAME: scale.run,
    stats.NAME: stats.run,
    metadata.NAME: metadata.run,
    streams.NAME: streams.run,
    reconcile.NAME: reconcile.run,
    takeover.NAME: takeover.run,
    memory.NAME: memory.run,
    sandbox.NAME: sandbox.run,
    untrusted.NAME: untrusted.run,
    gate.NAME: gate.run,
    soak.NAME: soak.run,
    access.NAME: access.run,
}


def _verdict(met: bool | None) -> str:
    return "" if met is None else "met" if met else "MISSED"


def table(results: dict[str, dict[str, Any]]) -> str:
    """One aligned table of every benchmark's rows."""
    lines = [("benchmark", "metric", "value", "target", "")]
    for name, result in results.items():
        if "error" in result:
            lines.append((name, "FAILED TO RUN", result["error"].splitlines()[-1][:60], "", ""))
            continue
        for r in result.get("rows", []):
            value = f"{r['value']} {r['unit']}".strip()
            lines.append((name, r["metric"], value, r["target"], _verdict(r["met"])))
    widths = [max(len(str(line[i])) for line in lines) for i in range(5)]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


async def run_one(
    name: str, quick: bool, keep: bool, results: dict[str, Any], seconds: dict[str, float]
) -> None:
    """Run one benchmark in its own temporary directory; a failure is recorded, not raised."""
    print(f"== {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix=f"ghapp-bench-{name}-")
    try:
        results[name] = await BENCHMARKS[name](quick, Path(folder))
    except Exception:
        results[name] = {"error": traceback.format_exc()}
        print(results[name]["error"], file=sys.stderr)
    finally:
        if keep:
            print(f"   kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    seconds[name] = round(time.monotonic() - started, 1)
    print(f"   {name}: {seconds[name]} s", file=sys.stderr, flush=True)


# Benchmarks that drop and recreate the schema of the PostgreSQL database they are given with
# --quick (the soak does too, but not with --quick: it runs beside the others then).
USES_POSTGRES = frozenset({"stats", "streams", "reconcile", "takeover", "metadata"})


async def run_all(
    names: list[str], quick: bool, keep: bool, results: dict[str, Any],
    seconds: dict[str, float],
) -> None:
    """One after another; `--quick` runs them side by side (its numbers mean nothing anyway),
    except those that empty the one PostgreSQL database: they take turns."""
    if quick:
        shared = [name for name in names if name in USES_POSTGRES]

        async def in_turn() -> None:
            for name in shared:
                await run_one(name, quick, keep, results, seconds)

        alone = (run_one(n, quick, keep, results, seconds) for n in names if n not in shared)
        await asyncio.gather(in_turn(), *alone)
    else:
        for name in names:
            await run_one(name, quick, keep, results, seconds)
    # Keep the order of BENCHMARKS in the table and the JSON.
    ordered = {name: results[name] for name in names}
    results.clear()
    results.update(ordered)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; print the table; write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke version: seconds, tiny")
    parser.add_argument("--only", help="comma-separated names: " + ",".join(BENCHMARKS))
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--minutes", type=int, default=soak.MINUTES,
                        help=f"length of the soak on each store (default {soak.MINUTES})")
    args = parser.parse_args(argv)
    soak.MINUTES = max(args.minutes, 3)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown: {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    signal.signal(signal.SIGTERM, _terminate)
    facts = machine()
    if facts["loadavg"][0] > 0.5:
        print(f"note: load average {facts['loadavg']} before the run: other processes compete "
              "for the 2 cores, so the numbers are noisy", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    try:
        asyncio.run(run_all(names, args.quick, args.keep, results, seconds))
    finally:
        CHILDREN.kill_all()
    failed = any("error" in result for result in results.values())
    print(f"ghapp benchmarks {'(quick) ' if args.quick else ''}{facts['date']}: "
          f"{facts['nproc']} x {facts['cpu_model']}, Python {facts['python']}, "
          f"commit {facts['git_commit'][:12]}{' (dirty)' if facts['git_dirty'] else ''}")
    print(table(results))
    if args.json:
        document = {
            "date": facts["date"],
            "quick": args.quick,
            "machine": facts,
            "loadavg_after": machine()["loadavg"],
            "seconds": seconds,
            "benchmarks": results,
            "targets": [
                {"benchmark": name, **r}
                for name, result in results.items()
                for r in result.get("rows", [])
                if r["target"]
            ],
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
