"""Profile the webhook path under the ingest load: where `ghapp serve` spends its CPU.

    python -m benchmarks.profile_webhooks [--seconds 10]
        [--mix realistic|dispatch-heavy|push-only|jobs|runs-and-jobs[-foreign]]
        [--target ghapp|bare] [--top 25] [--out DIR] [--set NAME=VALUE ...] [--no-spy]

Starts the same set-up as `benchmarks.ingest` (simulator, real deployments, one worker pinned
to core 0, wrk on core 1), samples the server with py-spy (`record --format raw --nolineno
--gil --nonblocking --rate 250`) for the length of one wrk run, and prints the functions of
the event loop's thread with the most samples: self (the function was running) and inclusive
(it was on the stack), with the server's CPU time per delivery (from /proc). py-spy is not a
project dependency: install it anywhere (`pip install py-spy`), on PATH or in $PY_SPY.
`--set` changes a server setting (A/B: `--set DELIVERY_LOG_DAYS=0 --no-spy`). Not part of
`python -m benchmarks`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import CHILDREN, Rig, cpu_seconds
from benchmarks.ingest import (
    DISPATCH_HEAVY,
    REALISTIC,
    Own,
    job_template,
    load,
    make_bodies,
    make_job_bodies,
    own_deployments,
    start_server,
    template,
    with_jobs,
    write_requests,
)
from ghapp.simulator.stack import settings_env


def read_raw(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per frame from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        # Other threads (aiosqlite's) wait in C most of the time, which py-spy counts as
        # running: /proc/PID/task/*/stat shows they use almost no CPU. Only the event loop.
        if not frames or frames[0].startswith("Thread._bootstrap "):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process: the event loop's ("main") and the others summed."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {"main": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = "main" if task.name == str(pid) else "other threads"
        seconds[name] += (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def package(frame: str) -> str:
    """Where a frame's code lives: `ghapp/web/webhooks.py`, else the top package (`sqlalchemy`)."""
    where = frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else "?"
    return where if where.startswith("ghapp/") else where.split("/")[0].removesuffix(".py")


def report(own: Counter[str], inclusive: Counter[str], total: int, top: int) -> str:
    """The top lists as text: by package (self), by function (self and inclusive).

    Inclusive counts understate the request path: SQLAlchemy's async calls run their sync part
    in greenlets and uvloop resumes coroutines from C, and py-spy shows those stacks without
    their callers; self counts by package do not depend on that."""
    lines = [f"{total} samples"]
    packages: Counter[str] = Counter()
    for frame, count in own.items():
        packages[package(frame)] += count
    lines.append("\nself samples by package (ghapp by module):")
    for name, count in packages.most_common(top):
        lines.append(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    for title, counts in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} by {title} samples:")
        for frame, count in counts.most_common(top):
            lines.append(f"  {100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


async def profile(
    seconds: int, mix: str, target: str, top: int, out: Path, *,
    spy: str | None, overrides: dict[str, str],
) -> str:
    """Set up, load, sample (unless `spy` is None); the report (raw stacks are kept in `out`)."""
    rig = await Rig.start(out / "profile.db")
    try:
        env = {**settings_env(rig.settings, 0), **overrides}
        first = await start_server("ghapp", 1, env, out)
        try:
            own = await own_deployments(rig, first, 20)
        finally:
            await CHILDREN.stop(first.proc)
        data = out / "requests.req"
        if mix == "push-only":  # no delivery that needs the database
            own = Own([], own.repository, own.installation_id)
        mixed = {"realistic": REALISTIC, "dispatch-heavy": DISPATCH_HEAVY}.get(mix, ["push"])
        bodies: list[Any] = make_bodies(template()[0], own, mixed)
        if mix == "jobs":  # workflow_job deliveries only, of runs ghapp does not watch
            foreign = Own([], own.repository, own.installation_id)
            bodies = [("workflow_job", b) for b in make_job_bodies(job_template()[0], foreign)]
        if mix.startswith("runs-and-jobs"):  # the ingest benchmark's mix: a run delivery, 3 jobs
            if mix.endswith("-foreign"):  # the same, none about ghapp's runs: their cost apart
                own = Own([], own.repository, own.installation_id)
                bodies = make_bodies(template()[0], own, mixed)
            bodies = with_jobs(bodies, make_job_bodies(job_template()[0], own))
        write_requests(data, bodies, rig.settings.webhook_secret[0])
        server = await start_server(target, 1, env, out)
        try:
            url = server.url + rig.settings.webhook_path
            await load(url, data, out, duration=2)  # warm-up
            raw = out / f"{target}-{mix}.raw.txt"
            sampler = None
            if spy is not None:
                sampler = await CHILDREN.spawn(
                    [spy, "record", "--pid", str(server.proc.pid), "--format", "raw",
                     "--nolineno", "--gil", "--nonblocking", "--rate", "250",
                     "--duration", str(seconds), "--output", str(raw)],
                    log_path=out / "py-spy.log",
                )
            cpu = cpu_seconds(server.proc.pid)
            threads = thread_cpu(server.proc.pid)
            result = await load(url, data, out, duration=seconds)
            cpu = cpu_seconds(server.proc.pid) - cpu
            threads = {k: v - threads.get(k, 0.0) for k, v in thread_cpu(server.proc.pid).items()}
            if sampler is not None:
                await sampler.wait()
                await CHILDREN.stop(sampler)
        finally:
            await CHILDREN.stop(server.proc)
    finally:
        await rig.close()
    head = (
        f"{target}, {mix} mix{' ' + str(overrides) if overrides else ''}: {result['rate']} "
        f"deliveries/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['socket_errors']} socket errors ({result['generator']}); server CPU "
        f"{cpu / max(result['requests'], 1) * 1e6:.0f} us per delivery, "
        f"{cpu / result['seconds']:.2f} cores busy ("
        + ", ".join(
            f"{name} {t / max(result['requests'], 1) * 1e6:.0f} us" for name, t in threads.items()
        )
        + ")"
    )
    if spy is None:
        return head
    return head + f"; raw stacks: {raw}\n" + report(*read_raw(raw), top)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--mix",
        choices=[
            "realistic", "dispatch-heavy", "push-only", "jobs", "runs-and-jobs",
            "runs-and-jobs-foreign",
        ],
        default="realistic",
    )
    parser.add_argument("--target", choices=["ghapp", "bare"], default="ghapp")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="where to keep the raw stacks (default: temp)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a server setting, e.g. DELIVERY_LOG_DAYS=0 (repeatable)")
    parser.add_argument("--no-spy", action="store_true", help="measure only, do not sample")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    spy = None
    if not args.no_spy:
        spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if not spy:
            parser.error("py-spy not found: pip install py-spy (anywhere), or set PY_SPY")
    out = args.out or Path(tempfile.mkdtemp(prefix="ghapp-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        print(asyncio.run(profile(args.seconds, args.mix, args.target, args.top, out,
                                  spy=spy, overrides=overrides)))
    finally:
        CHILDREN.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
