"""Soak: a real `ghapp serve` fed an organisation's traffic for ten minutes or more.

Method:

* ghapp runs as `ghapp serve` in a child process (not pinned) on SQLite, and again on
  PostgreSQL when `GHAPP_BENCH_POSTGRES_URL` (else `GHAPP_TEST_POSTGRES_URL`) names a database
  (its schema is dropped first). Production settings (`POLL_AFTER` 60 s, the delivery log on).
  A PostgreSQL server that runs without autovacuum (as a shared test server may) gets a
  `VACUUM ANALYZE` every 30 s from the benchmark, standing in for it: without it the delivery
  log's churn (1,000 rows kept, 100 written a second) bloats its table and slows its purge.
  The GitHub simulator and the callback receiver run in this process.
* Deployments: one a second (`--quick`: two), requested through the orchestrator API in turn
  over 20 repositories of one organisation; two of them run a workflow whose deploy step
  fails, so one deployment in ten fails (its verdict reads the failing job's log). Each run
  plays out in the simulator (a phase every second: `workflow_run` requested, in_progress,
  completed; its job's `workflow_job` queued, in_progress twice, completed; the
  `deployment_status` in_progress and success or failure), every webhook signed and sent to
  ghapp as GitHub sends it (payloads of `ghapp.simulator.payloads`).
* Unrelated deliveries at ten times the deployments' webhook traffic (the measured count of
  the deployments' deliveries x 10, sent as they go): `workflow_job` (40%) and `workflow_run`
  (15%) of runs ghapp did not dispatch (pushes, pull requests, someone's dispatch), `push`
  (20%), `pull_request` (15%) and `check_run` (10%), each with its own delivery id, signed
  with the webhook secret.
* Every minute (`--quick`: every 10 s): ghapp's VmRSS and open file descriptors (from
  /proc), its asyncio tasks (the `ghapp_asyncio_tasks` gauge of `/metrics`), the database's
  bytes (SQLite: the file plus its WAL; PostgreSQL: `pg_database_size`), and the verdict
  latency (from the simulator sending the run's `workflow_run.completed` to the receiver
  reading the callback) median and p99 of the runs that completed in that minute.
* Targets (issue 23): from the end of minute 2 to the end, RSS grows at most 5 MiB; the last
  minute's latency p99 at most 1.5 x minute 2's. Also stated: database bytes per deployment
  (growth over the run / deployments, the delivery log of the unrelated traffic included).
  `--minutes N` sets the length (default 10); `GHAPP_SOAK_STORES=postgresql` (or `sqlite`)
  runs one store only; `--quick` runs 30 s (two deployments a
  second, a sample every 10 s) on SQLite, judging nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import (
    CHILDREN,
    MIB,
    Rig,
    child_env,
    free_port,
    percentile,
    python,
    row,
    rss_mib,
    wait_http,
)
from ghapp.core.signatures import hub_signature
from ghapp.simulator import Job, Step, Workflow, payloads
from ghapp.simulator.stack import settings_env

NAME = "soak"
MINUTES = 10  # set by `python -m benchmarks --minutes N`
REPOSITORIES = 20
FAILING = {9, 19}  # repositories whose deploy fails: one deployment in ten
UNRELATED_FACTOR = 10
# A PostgreSQL server with autovacuum off (a shared test server) is vacuumed this often.
VACUUM_EVERY = 30.0
RSS_GROWTH_TARGET = 5.0  # MiB, after minute 2
P99_FACTOR_TARGET = 1.5
MIX = (("workflow_job", 40), ("workflow_run", 15), ("push", 20), ("pull_request", 15),
       ("check_run", 10))


def workflow(fails: bool) -> Workflow:
    """A one-job deploy to production (a phase a second); its deploy step fails if asked."""
    deploy = Step("Deploy over SSH", command="./deploy.sh", fail=fails,
                  output=["ssh: connect to host 203.0.113.7 port 22: Connection refused"]
                  if fails else ["deployed"],
                  error="Process completed with exit code 255." if fails else None)
    return Workflow(file="deploy.yml", name="Deploy", phase_delay=1.0, jobs=[
        Job("deploy", steps=[deploy], environment="production",
            environment_url="https://${{ inputs.environment }}.example.com/${{ github.run_id }}"),
    ])


@dataclass
class Traffic:
    """Unrelated deliveries: templates made once, each sent with fresh ids."""

    rig: Rig
    url: str
    templates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    failed: int = 0

    def build(self) -> None:
        """Payloads of runs, jobs, pushes, pull requests and check runs ghapp has no part in."""
        sim, world = self.rig.sim, self.rig.sim.world
        repo = sim.add_repository("acme/web")
        ci = repo.add_workflow(Workflow(file="ci.yml", name="CI", jobs=[
            Job("test", steps=[Step("Run pytest", command="pytest -q")]),
            Job("lint", steps=[Step("Run ruff", command="ruff check .")])]))
        run, _ = sim.player.create_run(repo, ci, "main", {})
        sim.player.begin(run)
        sim.player.complete(run)
        head = payloads.workflow_run(world, run)
        runs = []
        for event in ("push", "pull_request", "workflow_dispatch"):
            runs.append(payloads.envelope(world, repo, "completed", workflow=payloads.run_workflow(
                world, run), workflow_run={**head, "event": event}))
        self.templates["workflow_run"] = runs
        self.templates["workflow_job"] = [
            payloads.envelope(world, repo, job.status, workflow_job=payloads.job(
                world, run, job, webhook=True)) for job in run.jobs]
        sender = payloads.envelope(world, repo, None)["sender"]
        commit = {"id": run.head_sha, "tree_id": run.head_sha, "distinct": True,
                  "message": "Bump the widget cache size\n\nSee the capacity review.",
                  "timestamp": "2026-12-01T12:00:00Z", "url": f"https://github.com/acme/web/"
                  f"commit/{run.head_sha}", "author": {"name": "Dev", "email": "dev@acme.test",
                  "username": "dev"}, "committer": {"name": "GitHub", "email":
                  "noreply@github.com", "username": "web-flow"}, "added": [], "removed": [],
                  "modified": ["src/widgets/cache.py", "tests/test_cache.py"]}
        self.templates["push"] = [payloads.envelope(
            world, repo, None, ref="refs/heads/main", before="0" * 40, after=run.head_sha,
            created=False, deleted=False, forced=False, compare="https://github.com/acme/web/"
            "compare/abc...def", commits=[commit] * 3, head_commit=commit,
            pusher={"name": "dev", "email": "dev@acme.test"})]
        pull = {"url": "https://api.github.com/repos/acme/web/pulls/42", "number": 42,
                "state": "open", "title": "Bump the widget cache size", "user": sender,
                "body": "Raises the cache size after the capacity review." * 4,
                "head": {"ref": "cache", "sha": run.head_sha, "label": "acme:cache"},
                "base": {"ref": "main", "sha": "1" * 40, "label": "acme:main"},
                "draft": False, "merged": False, "commits": 3, "additions": 40,
                "deletions": 12, "changed_files": 2,
                "created_at": "2026-12-01T12:00:00Z", "updated_at": "2026-12-01T12:05:00Z"}
        self.templates["pull_request"] = [payloads.envelope(
            world, repo, action, number=42, pull_request=pull)
            for action in ("opened", "synchronize")]
        check = {"id": 1, "head_sha": run.head_sha, "status": "completed",
                 "conclusion": "success", "name": "test", "started_at": "2026-12-01T12:00:00Z",
                 "completed_at": "2026-12-01T12:02:00Z",
                 "output": {"title": "Tests passed", "summary": "312 passed",
                            "annotations_count": 0},
                 "check_suite": {"id": run.check_suite_id, "head_branch": "main"},
                 "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}}
        self.templates["check_run"] = [payloads.envelope(world, repo, "completed",
                                                         check_run=check)]

    def body(self, event: str) -> bytes:
        """A template of the event with ids of its own (a run or job ghapp never saw)."""
        payload = json.loads(json.dumps(random.choice(self.templates[event])))
        number = random.randrange(10**11, 10**12)
        if event == "workflow_run":
            payload["workflow_run"]["id"] = number
        elif event == "workflow_job":
            payload["workflow_job"]["id"] = number
            payload["workflow_job"]["run_id"] = number // 3
        elif event == "check_run":
            payload["check_run"]["id"] = number
        return json.dumps(payload, separators=(",", ":")).encode()

    async def post(self, session: aiohttp.ClientSession, event: str) -> None:
        """Send one, signed as GitHub signs it."""
        body = self.body(event)
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-Hub-Signature-256": hub_signature(body, self.rig.sim.webhook_secret),
                   "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/soak"}
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        self.sent[event] = self.sent.get(event, 0) + 1
        self.failed += not ok


def tasks_gauge(text: str) -> int | None:
    """`ghapp_asyncio_tasks` from a /metrics page."""
    for line in text.splitlines():
        if line.startswith("ghapp_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


async def database_bytes(url: str, path: Path | None) -> int:
    """SQLite: the file and its WAL; PostgreSQL: pg_database_size."""
    if path is not None:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


async def soak(tmp: Path, database_url: str, sqlite_path: Path | None, *, seconds: float,
               period: float, rate: float) -> dict[str, Any]:
    """One soak on one store; its per-period samples and totals."""
    rig = await Rig.start(tmp / "unused.db")
    rig.settings = rig.settings.model_copy(update={"database_url": database_url,
                                                   "poll_after": 60.0})
    proc = None
    stop = asyncio.Event()
    loops: list[asyncio.Task[Any]] = []
    try:
        names = [f"acme/svc-{i:02d}" for i in range(REPOSITORIES)]
        for i, name in enumerate(names):
            rig.sim.add_repository(name).add_workflow(workflow(i in FAILING))
        port = free_port()
        env = child_env(settings_env(rig.settings, port))
        # Not pinned: nothing here is compared with a reference on the same core, and on a
        # shared machine one core may be all someone else's for seconds.
        proc = await CHILDREN.spawn([python(), "-m", "ghapp", "serve"], env=env,
                                    log_path=tmp / "soak-ghapp.log")
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/readyz", timeout=60, proc=proc)
        rig.use(base)
        traffic = Traffic(rig, base + rig.settings.webhook_path)
        traffic.build()
        completed_at: dict[int, float] = {}
        run_minute: dict[int, int] = {}
        deployment_runs: dict[str, int] = {}
        expected: dict[str, str] = {}
        counters = {"dispatched": 0, "dispatch_failed": 0, "deployment_deliveries": 0}
        started = time.monotonic()
        wall_start = time.time()

        async def deployments() -> None:
            tick = 1.0 / rate
            pending: set[asyncio.Task[Any]] = set()
            for n in itertools.count():
                if stop.is_set():
                    break
                repository = names[n % REPOSITORIES]

                async def one(repository: str = repository, failing: bool = (
                        n % REPOSITORIES) in FAILING) -> None:
                    try:
                        answer = await rig.deploy(repository)
                    except Exception:
                        counters["dispatch_failed"] += 1
                        return
                    counters["dispatched"] += 1
                    expected[answer["id"]] = "failure" if failing else "success"
                    if answer.get("run"):
                        deployment_runs[answer["id"]] = int(answer["run"]["id"])

                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(max(started + (n + 1) * tick - time.monotonic(), 0))
            await asyncio.gather(*pending, return_exceptions=True)

        async def unrelated() -> None:
            connector = aiohttp.TCPConnector(limit=16)
            events = [e for e, weight in MIX for _ in range(weight)]
            owed = 0.0
            async with aiohttp.ClientSession(connector=connector) as session:
                while not stop.is_set():
                    await asyncio.sleep(0.1)
                    # Ten times what the deployments sent so far, sent as it is owed.
                    owed = UNRELATED_FACTOR * counters["deployment_deliveries"] - sum(
                        traffic.sent.values())
                    batch = [random.choice(events) for _ in range(int(max(owed, 0)))]
                    await asyncio.gather(*(traffic.post(session, e) for e in batch[:200]))

        def scan() -> None:
            # The simulator's deliveries: completion times, then let them go (memory).
            deliveries = rig.sim.webhooks.deliveries
            for delivery in deliveries:
                counters["deployment_deliveries"] += 1
                if delivery.event == "workflow_run" and delivery.action == "completed":
                    run_id = int(delivery.payload["workflow_run"]["id"])
                    at = delivery.attempt_time.timestamp()
                    completed_at[run_id] = at
                    run_minute[run_id] = int((at - wall_start) // period)
            deliveries.clear()
            rig.sim.requests.clear()

        async def scanner() -> None:
            while not stop.is_set():
                scan()
                await asyncio.sleep(0.2)

        async def sample(session: aiohttp.ClientSession) -> dict[str, Any]:
            async with session.get(f"{base}/metrics") as response:
                tasks = tasks_gauge(await response.text())
            fds = len(os.listdir(f"/proc/{proc.pid}/fd")) if proc else None
            return {"rss_mib": rss_mib(proc.pid) if proc else None, "fds": fds,
                    "asyncio_tasks": tasks,
                    "db_bytes": await database_bytes(database_url, sqlite_path),
                    "at": round(time.monotonic() - started, 1),
                    "dispatched": counters["dispatched"],
                    "deployment_deliveries": counters["deployment_deliveries"],
                    "unrelated_deliveries": sum(traffic.sent.values())}

        loops = [asyncio.create_task(deployments()), asyncio.create_task(unrelated()),
                 asyncio.create_task(scanner())]
        vacuumed = sqlite_path is None and not await autovacuum_on(database_url)
        if vacuumed:
            loops.append(asyncio.create_task(vacuum_every(database_url, VACUUM_EVERY, stop)))
        samples = []
        async with aiohttp.ClientSession() as session:
            db_start = await database_bytes(database_url, sqlite_path)
            periods = int(seconds // period)
            for k in range(periods):
                await asyncio.sleep(max(started + (k + 1) * period - time.monotonic(), 0))
                if proc.returncode is not None:
                    raise RuntimeError(f"ghapp serve exited with {proc.returncode}")
                samples.append(await sample(session))
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            # The last runs' verdicts (not counted in any period past the end).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(
                    {c.deployment["id"] for c in verdicts(rig)}) < counters["dispatched"]:
                scan()
                await asyncio.sleep(0.5)
            scan()
            final = await sample(session)
        by_period: dict[int, list[float]] = {}
        wrong = 0
        for callback in verdicts(rig):
            deployment = callback.deployment
            run_id = int((deployment.get("run") or {}).get("id") or 0)
            if deployment["verdict"]["status"] != expected.get(deployment["id"]):
                wrong += 1
            if run_id in completed_at:
                latency = callback.arrived_at - completed_at[run_id]
                by_period.setdefault(run_minute[run_id], []).append(latency)
        for k, entry in enumerate(samples):
            latencies = by_period.get(k, [])
            entry["period"] = k + 1
            entry["verdicts"] = len(latencies)
            entry["latency_median_ms"] = (round(statistics.median(latencies) * 1000, 1)
                                          if latencies else None)
            entry["latency_p99_ms"] = (round(percentile(latencies, 99) * 1000, 1)
                                       if latencies else None)
        done = len({c.deployment["id"] for c in verdicts(rig)})
        growth = final["db_bytes"] - db_start
        # From the end of period 2 on: past the WAL's and the pool's first growth.
        steady = (samples[-1]["db_bytes"] - samples[1]["db_bytes"]) / max(
            samples[-1]["dispatched"] - samples[1]["dispatched"], 1) if len(samples) > 2 else None
        return {
            "database": database_url.split(":")[0],
            "seconds": seconds,
            "period_s": period,
            "rate_per_s": rate,
            "samples": samples,
            "final": final,
            "dispatched": counters["dispatched"],
            "dispatch_failed": counters["dispatch_failed"],
            "verdicts": done,
            "wrong_verdicts": wrong,
            "deployment_deliveries": counters["deployment_deliveries"],
            "unrelated_deliveries": dict(traffic.sent),
            "unrelated_refused": traffic.failed,
            "db_bytes_start": db_start,
            "db_bytes_growth": growth,
            "bytes_per_deployment": round(growth / max(counters["dispatched"], 1)),
            "vacuumed_by_benchmark": vacuumed,
            "bytes_per_deployment_after_2": round(steady) if steady is not None else None,
        }
    finally:
        stop.set()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if proc is not None:
            await CHILDREN.stop(proc)
        await rig.close()


async def autovacuum_on(url: str) -> bool:
    """Whether the PostgreSQL server runs autovacuum (production's default)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW autovacuum")) == "on"
    finally:
        await conn.close()


async def vacuum_every(url: str, seconds: float, stop: asyncio.Event) -> None:
    """Stand in for autovacuum on a server that has it off: VACUUM ANALYZE now and then."""
    import asyncpg

    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()


def verdicts(rig: Rig) -> list[Any]:
    """The verdict callbacks the receiver accepted."""
    return [c for c in rig.receiver.delivered() if c.deployment.get("verdict")]


async def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema (the database is the benchmark's own)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


def judge(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Rows: the per-period samples, then the targets."""
    label = result["database"]
    unit = "min" if result["period_s"] == 60 else f"x{result['period_s']:g}s"
    out = []
    for s in result["samples"]:
        out.append(row(
            f"{label} {unit} {s['period']}: RSS MiB / fds / tasks / DB MiB / p50 / p99 ms",
            f"{s['rss_mib']} / {s['fds']} / {s['asyncio_tasks']} / "
            f"{s['db_bytes'] / MIB:.1f} / {s['latency_median_ms']} / {s['latency_p99_ms']}"))
    samples = result["samples"]
    complete = result["verdicts"] == result["dispatched"] and not result["wrong_verdicts"]
    out.append(row(f"{label}: verdicts (wrong) of deployments dispatched",
                   f"{result['verdicts']} ({result['wrong_verdicts']}) of "
                   f"{result['dispatched']}", "", "all, 0 wrong", complete))
    if len(samples) >= 3:
        growth = (samples[-1]["rss_mib"] or 0) - (samples[1]["rss_mib"] or 0)
        out.append(row(f"{label}: RSS growth after {unit} 2", round(growth, 1), "MiB",
                       "" if quick else f"<= {RSS_GROWTH_TARGET:g}",
                       None if quick else growth <= RSS_GROWTH_TARGET))
        second, last = samples[1]["latency_p99_ms"], samples[-1]["latency_p99_ms"]
        if second and last:
            ratio = round(last / second, 2)
            out.append(row(f"{label}: latency p99 last / {unit} 2", ratio, "",
                           "" if quick else f"<= {P99_FACTOR_TARGET:g}",
                           None if quick else ratio <= P99_FACTOR_TARGET))
    out.append(row(f"{label}: database bytes per deployment", result["bytes_per_deployment"],
                   "B"))
    if result["bytes_per_deployment_after_2"] is not None:
        out.append(row(f"{label}: database bytes per deployment after {unit} 2",
                       result["bytes_per_deployment_after_2"], "B"))
    return out


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """The soak on SQLite, then on PostgreSQL where one is configured (not with --quick)."""
    seconds, period, rate = (30.0, 10.0, 2.0) if quick else (MINUTES * 60.0, 60.0, 1.0)
    stores: list[tuple[str, str | None]] = [("sqlite", None)]
    postgres = os.environ.get("GHAPP_BENCH_POSTGRES_URL") or os.environ.get(
        "GHAPP_TEST_POSTGRES_URL")
    if postgres and not quick:
        stores.append(("postgresql", postgres))
    only = os.environ.get("GHAPP_SOAK_STORES")
    if only:
        stores = [s for s in stores if s[0] in only.split(",")]
    results = []
    for kind, url in stores:
        folder = tmp / kind
        folder.mkdir()
        path = None
        if url is None:
            path = folder / "ghapp.db"
            url = f"sqlite:///{path}"
        else:
            await reset_postgres(url)
        load = os.getloadavg()
        result = await soak(folder, url, path, seconds=seconds, period=period, rate=rate)
        result["loadavg_before"] = [round(x, 2) for x in load]
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        results.append(result)
    rows = [r for result in results for r in judge(result, quick)]
    return {"results": results, "rows": rows}
