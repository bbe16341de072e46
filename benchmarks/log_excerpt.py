"""Throughput and memory of the streaming log excerpt (``ghapp.core.logs.excerpt``).

Method:

* Logs are generated, never held: a generator writes GitHub's line format
  (``<UTC timestamp, 7 fractional digits>Z <text>``, CRLF line endings) and yields it in
  64 KiB chunks. A job looks real: the runner's "Set up job" preamble with its groups,
  ``actions/checkout``, a long "Run tests" step (pytest-like output, ANSI colours,
  ``##[group]``/``##[warning]`` lines, ~1,000 lines per second of log time) that makes up the
  bulk of the size, then the failing step, then post steps and "Cleaning up orphan processes".
  The steps list (``started_at``/``completed_at`` cut to whole seconds, ``-07:00`` offsets as
  the jobs API writes them) is derived from the generated timestamps.
* Scenarios: ``tail`` - the failing step is a short one at the end (the usual deploy failure);
  ``section`` - the failing step is the long one (its section is the whole log); ``fallback`` -
  no steps info, so the error neighbourhood is tracked over the whole log.
* Speed: only ``feed``/``finish`` calls are timed (``time.perf_counter`` around each call), so
  generating the log does not count; MiB/s is the best of 3 runs (``--smoke``: 1 run). On a
  shared machine wall time also counts waiting for a core, so the CPU time of this thread
  (``time.thread_time``) is reported beside it (``cpu_mib_per_s``): what the scan costs.
* Memory: one more run under ``tracemalloc`` gives the peak of traced allocations made while
  feeding (the generator's own chunk is alive at most one at a time and is included), and
  ``resource.getrusage().ru_maxrss`` gives the growth of the process's peak RSS since
  ``run()`` started: everything measured so far (sizes run in order, so the 100 MiB row
  bounds all of them). Both are process-wide: run alone for meaningful numbers.

Usage: ``python -m benchmarks.log_excerpt [--sizes 1,10,100] [--json out.json] [--smoke]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

from ghapp.core.logs.excerpt import ExcerptBuilder

CHUNK = 64 * 1024
MIB = 1024 * 1024
TICK = 10_000_000  # 100 ns units per second, as the 7 fractional digits count
LINE_TICKS = 10_000  # 1 ms of log time per line
START = datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC)
SCENARIOS = ("tail", "section", "fallback")

_TEST_LINES = [
    b"tests/test_api.py::test_create_deployment[case-%d] \x1b[32mPASSED\x1b[0m [ 42%%]",
    b"tests/test_webhooks.py::test_signature_rotation[%d] \x1b[32mPASSED\x1b[0m [ 43%%]",
    b"  Downloading https://files.pythonhosted.org/packages/%d/aiohttp-3.10.5.tar.gz (7.5 MB)",
    b"\x1b[36;1mINFO\x1b[0m worker-%d: processed batch in 0.0123s (records=512, retries=0)",
    b"tests/test_store.py::test_outbox_retry_backoff[attempt-%d] \x1b[33mSKIPPED\x1b[0m (no pg)",
    b"npm WARN deprecated inflight@1.0.%d: This module is not supported, and leaks memory.",
]


@dataclass
class _Log:
    """Writes timestamped CRLF lines into a buffer, handing out 64 KiB chunks."""

    tick: int = int(START.timestamp()) * TICK
    buf: bytearray = field(default_factory=bytearray)
    size: int = 0
    _second: int = -1
    _prefix: bytes = b""

    def line(self, text: bytes) -> None:
        second, frac = divmod(self.tick, TICK)
        if second != self._second:
            self._second = second
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._prefix = stamp.encode()
        data = b"%s.%07dZ %s\r\n" % (self._prefix, frac, text)
        self.buf += data
        self.size += len(data)
        self.tick += LINE_TICKS

    def chunks(self) -> Iterator[bytes]:
        while len(self.buf) >= CHUNK:
            yield bytes(self.buf[:CHUNK])
            del self.buf[:CHUNK]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.tick // TICK, UTC)


_MST = timezone(timedelta(hours=-7))


def _api_time(moment: datetime) -> str:
    """A second the way the jobs API writes step times."""
    return moment.astimezone(_MST).strftime("%Y-%m-%dT%H:%M:%S.000-07:00")


def generate(size_mib: int, scenario: str, steps: list[dict[str, Any]]) -> Iterator[bytes]:
    """Yield a job log of about ``size_mib`` MiB in 64 KiB chunks; fill ``steps`` meanwhile."""
    log = _Log()
    total = size_mib * MIB
    marks: list[tuple[str, datetime, datetime]] = []

    def step(name: str, body: Iterator[None]) -> Iterator[bytes]:
        began = log.now()
        for _ in body:
            yield from log.chunks()
        marks.append((name, began, log.now()))

    def setup() -> Iterator[None]:
        log.line(b"Current runner version: '2.321.0'")
        for group in (b"Operating System", b"Runner Image", b"GITHUB_TOKEN Permissions"):
            log.line(b"##[group]" + group)
            for i in range(6):
                log.line(b"  detail %d of %s" % (i, group))
            log.line(b"##[endgroup]")
        log.line(b"Download action repository 'actions/checkout@v4' (SHA:11bd71901bbe5b1630ce)")
        yield None

    def checkout() -> Iterator[None]:
        log.line(b"##[group]Run actions/checkout@v4")
        log.line(b"with:")
        log.line(b"  repository: acme/shop")
        log.line(b"##[endgroup]")
        for i in range(40):
            log.line(b"[command]/usr/bin/git config --local gc.auto %d" % i)
        yield None

    def tests(failing: bool) -> Iterator[None]:
        log.line(b"##[group]Run pytest -q")
        log.line(b"\x1b[36;1mpytest -q\x1b[0m")
        log.line(b"shell: /usr/bin/bash -e {0}")
        log.line(b"##[endgroup]")
        budget = total - 64 * 1024  # leave room for the steps after it
        i = 0
        while log.size < budget:
            for _ in range(200):
                log.line(_TEST_LINES[i % len(_TEST_LINES)] % i)
                i += 1
            if i % 20_000 == 0:
                log.line(b"##[warning]Slow test: tests/test_api.py::test_bulk took 12.3s")
            yield None
        if failing:
            log.line(b"FAILED tests/test_api.py::test_rollback - AssertionError: 500 != 200")
            log.line(b"##[error]Process completed with exit code 1.")
        yield None

    def deploy(failing: bool) -> Iterator[None]:
        log.line(b"##[group]Run ssh deploy@prod.example 'docker compose up -d'")
        log.line(b"\x1b[36;1mssh deploy@prod.example 'docker compose up -d'\x1b[0m")
        log.line(b"##[endgroup]")
        for i in range(300):
            log.line(b"Container shop-web-%d  \x1b[32mStarted\x1b[0m" % i)
        if failing:
            log.line(b"ssh: connect to host prod.example port 22: Connection timed out")
            log.line(b"##[error]Process completed with exit code 255.")
        yield None

    def post() -> Iterator[None]:
        log.line(b"Post job cleanup.")
        log.line(b"[command]/usr/bin/git version")
        yield None

    def complete() -> Iterator[None]:
        log.line(b"Cleaning up orphan processes")
        yield None

    yield from step("Set up job", setup())
    yield from step("Run actions/checkout@v4", checkout())
    yield from step("Run tests", tests(scenario == "section"))
    yield from step("Deploy over SSH", deploy(scenario != "section"))
    yield from step("Post Run actions/checkout@v4", post())
    yield from step("Complete job", complete())
    if log.buf:
        yield bytes(log.buf)
    failed = "Run tests" if scenario == "section" else "Deploy over SSH"
    steps.clear()
    for number, (name, began, ended) in enumerate(marks, 1):
        steps.append(
            {
                "number": number,
                "name": name,
                "status": "completed",
                "conclusion": "failure" if name == failed else "success",
                "started_at": _api_time(began),
                "completed_at": _api_time(ended),
            }
        )


@cache
def _steps_of(size_mib: int, scenario: str) -> list[dict[str, Any]]:
    """The steps list of a generated log: known only once it is written, so a first, untimed
    pass derives it (the generator is deterministic)."""
    steps: list[dict[str, Any]] = []
    for _ in generate(size_mib, scenario, steps):
        pass
    return steps


def _one_run(size_mib: int, scenario: str) -> tuple[float, float, int, Any]:
    """Feed one generated log: wall and CPU seconds spent in the builder, bytes, excerpt."""
    if scenario == "fallback":
        builder = ExcerptBuilder(None, None)
    else:
        steps = _steps_of(size_mib, scenario)
        number = next(s["number"] for s in steps if s["conclusion"] == "failure")
        builder = ExcerptBuilder(steps, number)
    spent = cpu = 0.0
    nbytes = 0
    for chunk in generate(size_mib, scenario, []):
        nbytes += len(chunk)
        t0, c0 = time.perf_counter(), time.thread_time()
        builder.feed(chunk)
        spent += time.perf_counter() - t0
        cpu += time.thread_time() - c0
    t0, c0 = time.perf_counter(), time.thread_time()
    excerpt = builder.finish()
    spent += time.perf_counter() - t0
    cpu += time.thread_time() - c0
    return spent, cpu, nbytes, excerpt


def _max_rss() -> int:
    """The process's peak RSS so far, in bytes (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_run(size_mib: int, scenario: str) -> int:
    """Peak traced allocation growth (bytes) during one run."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    _one_run(size_mib, scenario)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def run(
    sizes: list[int], repeats: int = 3, scenarios: tuple[str, ...] = SCENARIOS
) -> list[dict[str, Any]]:
    """Measure every size and scenario; one dict per row (for a suite entry point)."""
    rows: list[dict[str, Any]] = []
    rss_start = _max_rss()
    for size in sizes:
        for scenario in scenarios:
            best = best_cpu = float("inf")
            nbytes = 0
            excerpt: Any = None
            for _ in range(repeats):
                spent, cpu, nbytes, excerpt = _one_run(size, scenario)
                best = min(best, spent)
                best_cpu = min(best_cpu, cpu)
            peak = _memory_run(size, scenario)
            rss = _max_rss() - rss_start
            rows.append(
                {
                    "size_mib": size,
                    "scenario": scenario,
                    "bytes": nbytes,
                    "seconds": round(best, 4),
                    "mib_per_s": round(nbytes / MIB / best, 1),
                    "cpu_mib_per_s": round(nbytes / MIB / max(best_cpu, 1e-9), 1),
                    "tracemalloc_peak_mib": round(peak / MIB, 2),
                    "rss_growth_mib": round(rss / MIB, 2),
                    "method": excerpt.method,
                    "excerpt_lines": excerpt.text.count("\n") + 1 if excerpt.text else 0,
                    "lines_seen": excerpt.lines_seen,
                }
            )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'MiB':>5} {'scenario':<9} {'MiB/s':>8} {'CPU MiB/s':>9} {'best s':>8} "
        f"{'tracemalloc':>12} {'RSS +':>7} {'method':<15} {'lines':>9}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(
            f"{r['size_mib']:>5} {r['scenario']:<9} {r['mib_per_s']:>8} {r['cpu_mib_per_s']:>9} "
            f"{r['seconds']:>8} "
            f"{r['tracemalloc_peak_mib']:>9} MiB {r['rss_growth_mib']:>7} {r['method']:<15} "
            f"{r['lines_seen']:>9}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,10,100", help="log sizes in MiB, comma-separated")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--smoke", action="store_true", help="1 MiB, one run (for CI)")
    args = parser.parse_args(argv)
    sizes = [1] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = run(sizes, repeats=1 if args.smoke else 3)
    print(_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
