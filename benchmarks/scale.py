"""Scale: 10,000 unfinished deployments in the store: webhook handling, start-up, memory.

Method:

* ghapp runs as `ghapp serve` pinned to core 0, SQLite in a temporary directory,
  `POLL_AFTER` 3600 s (so only start-up reconciliation polls), JSON logs to a file; the
  simulator (this process) answers its GitHub calls.
* Idle: a fresh process on an empty database; time from spawn to `/readyz` answering 200, then
  3 s of nothing, then VmRSS from /proc/PID/status. That first start creates the schema
  (Alembic); the process is then restarted on the same database and measured again the same
  way, which is the figure judged (target: idle RSS <= 60 MiB).
* Baseline: 200 unfinished deployments (`--quick`: 20) are inserted into that running server's
  database with `SqlStore.create(ghapp.core.deploys.new_deployment(...))`, each with a run id,
  spread
  over 100 repositories of one installation; then webhook handling time is measured.
* Handling time: the round trip of one signed 19,296-byte `workflow_run` delivery (the body of
  `benchmarks.ingest`) posted from this process over a kept-alive connection, one at a time,
  three kinds interleaved, N of each (N = the baseline count; 5 of each first, not counted):
  `unrelated push` (a run ghapp did not dispatch; the cheap filter), `unrelated dispatch`
  (someone else's `workflow_dispatch` run in a repository with deployments: a lookup by run id
  and the GHES candidate query), and
  `tracked` (`in_progress` of a deployment not heard from since its dispatch: the deployment
  moves, a durable write). Reported: median and p99; the answers' outcomes are checked.
* Scale: deployments are inserted up to 10,000 (`--quick`: 200) and ghapp is started again:
  time to `/readyz`, and time until the start-up reconciliation has claimed every unfinished
  deployment (counted in the database every 50 ms: rows with a `lease_owner`). The simulator
  does not know these runs: the repository listings do not show them, so each is then asked
  about alone (answered 404), at most `ghapp.work.poller.MAX_POLLS_PER_SECOND` requests a
  second: reported as measured requests/s and the projection, not waited for. Reconciliation
  of runs GitHub does know (one listing per repository) is `benchmarks.reconcile`. Handling
  time is measured again at 10,000 while those polls go on, and VmRSS / VmHWM are read
  after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import (
    CHILDREN,
    SERVER_CPUS,
    Rig,
    child_env,
    free_port,
    python,
    row,
    rss_mib,
    sqlite_count,
    summary_ms,
    wait_http,
)
from benchmarks.ingest import Own, make_body, template
from ghapp.core.deploys import new_deployment
from ghapp.core.models import DeploymentRequest
from ghapp.simulator.stack import settings_env
from ghapp.store import SqlStore
from ghapp.work.poller import MAX_POLLS_PER_SECOND

NAME = "scale"
REPOSITORIES = 100
RUN_BASE = 7_000_000_000
FOREIGN_RUN = 8_900_000_000
IDLE_TARGET_MIB = 60.0
WARMUP = 5  # deliveries of each kind sent first and not counted
# Deployments the start-up reconciliation has taken so far (leased, or polled and released).
CLAIMED = (
    "SELECT COUNT(*) FROM deployments WHERE (lease_owner IS NOT NULL OR polled_at IS NOT NULL) "
    "AND phase IN ('dispatched', 'in_progress')"
)
# Reconciliation works in batches at a bounded rate; its first batch shows it has begun.
FIRST_BATCH = 50


def repository(i: int) -> str:
    """The repository of the i-th inserted deployment."""
    return f"acme/repo-{i % REPOSITORIES:02d}"


async def insert(store: SqlStore, first: int, last: int, installation: int, callback: str) -> float:
    """Insert deployments first..last-1 (unfinished, each with a run); the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    for i in range(first, last):
        request = DeploymentRequest(repository=repository(i), workflow="deploy.yml", ref="main")
        record = new_deployment(
            f"dep_{uuid.uuid4().hex[:24]}", request, ref="main", callback_url=callback,
            installation_id=installation, run_id=RUN_BASE + i,
            html_url=f"https://github.com/{repository(i)}/actions/runs/{RUN_BASE + i}", now=now,
        )
        await store.create(record)
    return time.perf_counter() - started


async def spawn(rig: Rig, tmp: Path, name: str) -> tuple[asyncio.subprocess.Process, str, float]:
    """Start `ghapp serve` pinned to core 0; its process, URL and spawn time (monotonic)."""
    port = free_port()
    env = child_env(settings_env(rig.settings, port))
    began = time.monotonic()
    proc = await CHILDREN.spawn(
        [python(), "-m", "ghapp", "serve"], env=env, cpus=SERVER_CPUS, log_path=tmp / name
    )
    return proc, f"http://127.0.0.1:{port}", began


async def claimed(database: Path, total: int, timeout: float) -> float | None:
    """The monotonic time `total` unfinished deployments were claimed (None on time-out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(sqlite_count, database, CLAIMED) >= total:
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


async def handling(
    rig: Rig, url: str, base: dict[str, Any], tracked: list[int], installation: int
) -> dict[str, Any]:
    """Round trips of the three kinds of delivery, interleaved; summaries and bad outcomes."""
    expected = {
        "unrelated push": "not_ours", "unrelated dispatch": "not_ours", "tracked": "handled"
    }
    times: dict[str, list[float]] = {kind: [] for kind in expected}
    wrong = 0
    async with aiohttp.ClientSession() as session:
        for n, run_id in enumerate(tracked):
            counted = n >= WARMUP
            own = Own([run_id], repository(run_id - RUN_BASE), installation)
            bodies = {
                "unrelated push": make_body(base, run_id=FOREIGN_RUN + n, event="push",
                                            ours=None, repository=repository(n)),
                "unrelated dispatch": make_body(base, run_id=FOREIGN_RUN + n,
                                                event="workflow_dispatch", ours=None,
                                                repository=repository(n)),
                "tracked": make_body(base, run_id=run_id, event="workflow_dispatch", ours=own),
            }
            for kind, body in bodies.items():
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "workflow_run",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": rig.sim.sign(body),
                }
                started = time.perf_counter()
                async with session.post(url + rig.settings.webhook_path, data=body,
                                        headers=headers) as response:
                    answer = await response.json()
                if counted:
                    times[kind].append(time.perf_counter() - started)
                wrong += answer.get("outcome") != expected[kind]
    return {"times": {kind: summary_ms(values) for kind, values in times.items()}, "wrong": wrong}


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Idle, baseline and 10,000-deployment measurements."""
    small, total = (20, 200) if quick else (200, 10_000)
    database = tmp / "scale.db"
    rig = await Rig.start(database)
    out: dict[str, Any] = {"baseline_deployments": small, "deployments": total}
    proc: asyncio.subprocess.Process | None = None
    store = SqlStore(rig.settings.database_url)
    try:
        for i in range(REPOSITORIES):
            rig.sim.add_repository(repository(i))
        installation = rig.sim.repos[repository(0)].installation_id
        callback = rig.receiver.url
        base, _source = template()

        # Idle, then the baseline.
        proc, url, began = await spawn(rig, tmp, "scale-ghapp-idle.log")
        out["ready_empty_s"] = round(await wait_http(url + "/readyz", 60, proc) - began, 3)
        await asyncio.sleep(3.0)
        out["idle_first_rss_mib"] = rss_mib(proc.pid)
        # A server restarts against its database far more often than it first creates it
        # (which migrates, and so loads Alembic): the idle figure is after a restart.
        await CHILDREN.stop(proc)
        proc, url, began = await spawn(rig, tmp, "scale-ghapp-idle-restart.log")
        await wait_http(url + "/readyz", 60, proc)
        await asyncio.sleep(3.0)
        out["idle_rss_mib"] = rss_mib(proc.pid)
        await store.open()
        each = small + WARMUP
        out["inserted_first"] = each
        await insert(store, 0, each, installation, callback)
        baseline = await handling(rig, url, base, [RUN_BASE + i for i in range(each)],
                                  installation)
        out["baseline"] = baseline["times"]
        out["baseline_rss_mib"] = rss_mib(proc.pid)
        await CHILDREN.stop(proc)
        proc = None

        # Up to `total`, and a restart.
        out["insert_s"] = round(await insert(store, each, total, installation, callback), 2)
        await store.close()
        proc, url, began = await spawn(rig, tmp, "scale-ghapp-10k.log")
        ready, claim = await asyncio.gather(
            wait_http(url + "/readyz", 120, proc), claimed(database, min(total, FIRST_BATCH), 120)
        )
        out["ready_s"] = round(ready - began, 3)
        out["claimed_all_s"] = round(claim - began, 3) if claim is not None else None
        out["rss_after_claim_mib"] = rss_mib(proc.pid)
        window = time.monotonic()
        polls_before = rig.sim.api_calls(path="/actions/runs/")
        loaded = await handling(
            rig, url, base, [RUN_BASE + i for i in range(each, 2 * each)], installation
        )
        polls = rig.sim.api_calls(path="/actions/runs/") - polls_before
        out["at_scale"] = loaded["times"]
        out["polls_per_s"] = round(polls / max(time.monotonic() - window, 1e-9), 2)
        out["poll_window_s"] = round(time.monotonic() - window, 2)
        out["reconcile_projection_s"] = round(total / MAX_POLLS_PER_SECOND)
        out["rss_mib"] = rss_mib(proc.pid)
        out["hwm_mib"] = rss_mib(proc.pid, "VmHWM")
        out["wrong_outcomes"] = baseline["wrong"] + loaded["wrong"]
    finally:
        if proc is not None:
            await CHILDREN.stop(proc)
        await store.close()
        await rig.close()
    return summarize(out)


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    """Table rows."""
    idle = out["idle_rss_mib"]
    rows = [
        row("idle RSS (empty store, restarted)", idle, "MiB", f"<= {IDLE_TARGET_MIB:g}",
            idle is not None and idle <= IDLE_TARGET_MIB),
        row("idle RSS (empty store, first start: migrates)", out["idle_first_rss_mib"], "MiB"),
        row("start to /readyz, empty store", out["ready_empty_s"], "s"),
    ]
    for kind in ("unrelated push", "unrelated dispatch", "tracked"):
        small, large = out["baseline"][kind], out["at_scale"][kind]
        rows.append(row(
            f"handling {kind}: median ({out['baseline_deployments']} -> {out['deployments']})",
            f"{small['median_ms']} -> {large['median_ms']}", "ms",
        ))
        rows.append(row(f"handling {kind}: p99 at {out['deployments']}", large["p99_ms"], "ms"))
    rows += [
        row("SqlStore.create, per deployment (the inserts)",
            round(1000 * out["insert_s"] / max(out["deployments"] - out["inserted_first"], 1), 2),
            "ms"),
        row(f"start to /readyz, {out['deployments']} unfinished", out["ready_s"], "s"),
        row(f"start to reconciliation's first {min(out['deployments'], FIRST_BATCH)} claimed",
            out["claimed_all_s"], "s"),
        row("reconciliation polls/s (measured)", out["polls_per_s"], "/s"),
        row(f"reconciliation of {out['deployments']} unknown runs at "
            f"{MAX_POLLS_PER_SECOND:g} requests/s (projected)",
            out["reconcile_projection_s"], "s"),
        row(f"RSS with {out['deployments']} unfinished (peak)",
            f"{out['rss_mib']} ({out['hwm_mib']})", "MiB"),
    ]
    if out["wrong_outcomes"]:
        rows.append(row("webhook answers with an unexpected outcome", out["wrong_outcomes"], "",
                        "0", False))
    return {**out, "rows": rows}
