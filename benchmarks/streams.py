"""Event streams: how fast a progress change reaches a connected stream, and what streams cost.

Method:

* Servers: `ghapp serve` as real processes (JSON logs to a file, `poll_after` 3600 s), the GitHub
  simulator and a callback receiver in this process (`benchmarks._common.Rig`). One deployment
  of a one-job workflow is made through the API with the simulator's webhooks dropped and its
  run held, so nothing but the benchmark's own webhooks moves it.
* Change to stream: a client here holds `GET /api/v1/deployments/{id}/events` open. The
  benchmark then posts signed `workflow_job.in_progress` webhooks (the simulator's signing, the
  job's steps one more completed each time, a new job every 20 steps), one after the other with
  20 ms between them. Start: just before the webhook is posted (on loopback, its arrival). End:
  the moment the stream's `progress` event showing that step count has been read. Median and
  p99 over the samples.
  - one process: the webhook and the stream on the same `ghapp serve` (SQLite);
  - across replicas: two `ghapp serve` processes on one PostgreSQL database (webhooks to the
    first, the stream on the second; PostgreSQL NOTIFY carries the change), when
    `GHAPP_BENCH_POSTGRES_URL` (or `GHAPP_TEST_POSTGRES_URL`) names a database it may use (not
    with `--quick`); and two processes on one SQLite file (the version poll carries it).
* Memory: `ghapp serve` (one process, SQLite) with 50 running deployments; VmRSS after 3 s of
  quiet with no stream open, then with 1,000 streams open (20 per deployment, each having
  received its snapshot, 3 s of quiet again). The difference is the cost of the streams.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
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
    summary_ms,
    tree_pids,
    wait_http,
)
from ghapp.client._sse import EventParser
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import settings_env

NAME = "streams"
ONE_PROCESS_TARGET_MS = 100.0
REPLICAS_TARGET_MS = 1000.0
MEMORY_TARGET_MIB = 50.0
STEPS_PER_JOB = 20
GAP = 0.02


async def start_ghapp(rig: Rig, database_url: str, tmp: Path, name: str) -> Any:
    """`ghapp serve` on a free port; (process, base URL)."""
    port = free_port()
    settings = rig.settings.model_copy(update={"database_url": database_url})
    env = child_env({**settings_env(settings, port)})
    proc = await CHILDREN.spawn(
        [python(), "-m", "ghapp", "serve"], env=env, cpus=SERVER_CPUS, log_path=tmp / f"{name}.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(url + "/readyz", timeout=60, proc=proc)
    except BaseException:
        await CHILDREN.stop(proc)
        raise
    return proc, url


def one_job_workflow() -> Workflow:
    """A deploy workflow with one job (its progress is what the benchmark's webhooks move)."""
    return Workflow(
        file="deploy.yml", name="Deploy", jobs=[Job("deploy", steps=[Step("Deploy")])]
    )


async def held_deployments(rig: Rig, count: int) -> list[dict[str, Any]]:
    """Deployments whose runs stay unfinished (webhooks dropped, runs held)."""
    rig.sim.faults.drop_webhooks = True
    rig.sim.auto = False
    return [await rig.deploy("acme/shop", ref="main") for _ in range(count)]


def job_webhook(rig: Rig, deployment: dict[str, Any], k: int) -> bytes:
    """The k-th webhook: job k // 20, with k % 20 + 1 of its steps completed."""
    repo = rig.sim.repos["acme/shop"]
    done = k % STEPS_PER_JOB + 1
    steps = [
        {
            "number": n + 1,
            "name": f"Step {n + 1}",
            "status": "completed" if n < done else "in_progress" if n == done else "queued",
            "conclusion": "success" if n < done else None,
        }
        for n in range(STEPS_PER_JOB + 1)
    ]
    payload = {
        "action": "in_progress",
        "workflow_job": {
            "id": 70_000_000_000 + k // STEPS_PER_JOB,
            "run_id": deployment["run"]["id"],
            "run_attempt": 1,
            "name": f"deploy-{k // STEPS_PER_JOB}",
            "status": "in_progress",
            "conclusion": None,
            "started_at": "2026-12-01T12:00:00Z",
            "steps": steps,
        },
        "repository": {"full_name": "acme/shop"},
        "installation": {"id": repo.installation_id},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _key(snapshot: dict[str, Any]) -> int:
    return int(snapshot["progress"]["steps_completed"]) if snapshot.get("progress") else -1


async def change_to_stream(
    rig: Rig, deployment: dict[str, Any], webhook_url: str, stream_url: str, samples: int
) -> list[float]:
    """Seconds from each job webhook's post to the first stream event showing it.

    Changes that come close together may reach the stream as one event (each event is the
    whole deployment): that event shows all of them."""
    arrived: list[tuple[float, int]] = []
    first = asyncio.Event()
    caught_up = asyncio.Event()
    wanted = samples

    async def follow() -> None:
        parser = EventParser()
        url = f"{stream_url}/api/v1/deployments/{deployment['id']}/events"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
            session.get(url, headers=rig.auth) as response,
        ):
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                for event in parser.feed(chunk):
                    first.set()
                    count = _key(json.loads(event.data))
                    arrived.append((now, count))
                    if count >= wanted:
                        caught_up.set()

    task = asyncio.create_task(follow())
    sent: dict[int, float] = {}
    try:
        await asyncio.wait_for(first.wait(), 30)
        async with aiohttp.ClientSession() as session:
            for k in range(samples):
                body = job_webhook(rig, deployment, k)
                headers = {
                    "X-GitHub-Event": "workflow_job",
                    "X-GitHub-Delivery": f"bench-{deployment['id']}-{k}",
                    "X-Hub-Signature-256": rig.sim.sign(body),
                    "Content-Type": "application/json",
                }
                # Each webhook completes one more step (earlier jobs stay as last reported).
                expected = k + 1
                sent[expected] = time.perf_counter()
                async with session.post(webhook_url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"webhook answered {response.status}")
                await asyncio.sleep(GAP)
        await asyncio.wait_for(caught_up.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return [
        next(when for when, count in arrived if count >= key) - at for key, at in sent.items()
    ]


async def one_process(rig: Rig, tmp: Path, samples: int) -> dict[str, Any]:
    """Webhook and stream on one `ghapp serve` (SQLite)."""
    proc, url = await start_ghapp(rig, f"sqlite:///{tmp / 'one.db'}", tmp, "one")
    try:
        rig.use(url)
        [deployment] = await held_deployments(rig, 1)
        webhook = url + rig.settings.webhook_path
        return summary_ms(await change_to_stream(rig, deployment, webhook, url, samples))
    finally:
        await CHILDREN.stop(proc)


async def replicas(rig: Rig, tmp: Path, database_url: str, samples: int) -> dict[str, Any]:
    """Webhooks to one `ghapp serve`, the stream on another, one database."""
    name = "pg" if database_url.startswith("postgres") else "sqlite"
    first, first_url = await start_ghapp(rig, database_url, tmp, f"{name}-a")
    try:
        second, second_url = await start_ghapp(rig, database_url, tmp, f"{name}-b")
        try:
            rig.use(first_url)
            [deployment] = await held_deployments(rig, 1)
            webhook = first_url + rig.settings.webhook_path
            seconds = await change_to_stream(rig, deployment, webhook, second_url, samples)
            return summary_ms(seconds)
        finally:
            await CHILDREN.stop(second)
    finally:
        await CHILDREN.stop(first)


async def memory(rig: Rig, tmp: Path, streams: int, deployments: int) -> dict[str, Any]:
    """VmRSS of `ghapp serve` with no stream open, then with `streams` open."""
    proc, url = await start_ghapp(rig, f"sqlite:///{tmp / 'memory.db'}", tmp, "memory")
    try:
        rig.use(url)
        held = await held_deployments(rig, deployments)
        await asyncio.sleep(3)
        before = sum(rss_mib(pid) or 0.0 for pid in tree_pids(proc.pid))
        opened = 0
        ready = asyncio.Event()
        stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0)

        async def hold(session: aiohttp.ClientSession, deployment_id: str) -> None:
            nonlocal opened
            url_ = f"{url}/api/v1/deployments/{deployment_id}/events"
            async with session.get(url_, headers=rig.auth) as response:
                await response.content.readuntil(b"\n\n")
                opened += 1
                if opened == streams:
                    ready.set()
                await stop.wait()

        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as session:
            tasks = [
                asyncio.create_task(hold(session, held[n % len(held)]["id"]))
                for n in range(streams)
            ]
            try:
                await asyncio.wait_for(ready.wait(), 120)
                await asyncio.sleep(3)
                during = sum(rss_mib(pid) or 0.0 for pid in tree_pids(proc.pid))
            finally:
                stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return {
            "streams": streams,
            "deployments": deployments,
            "rss_before_mib": round(before, 1),
            "rss_with_streams_mib": round(during, 1),
            "growth_mib": round(during - before, 1),
        }
    finally:
        await CHILDREN.stop(proc)


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """The three measurements; rows against the issue's targets."""
    samples = 10 if quick else 200
    streams = 50 if quick else 1000
    results: dict[str, Any] = {}
    postgres = os.environ.get("GHAPP_BENCH_POSTGRES_URL") or os.environ.get(
        "GHAPP_TEST_POSTGRES_URL"
    )
    rig = await Rig.start(tmp / "unused.db")
    try:
        rig.sim.add_repository("acme/shop").add_workflow(one_job_workflow())
        results["one_process"] = await one_process(rig, tmp, samples)
        results["replicas_sqlite"] = await replicas(
            rig, tmp, f"sqlite:///{tmp / 'shared.db'}", samples
        )
        results["replicas_postgres"] = None
        if postgres and not quick:
            results["replicas_postgres"] = await replicas(rig, tmp, postgres, samples)
        results["memory"] = await memory(rig, tmp, streams, 50)
    finally:
        await rig.close()
    return summarize(results)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Rows: median and p99 of each path against its target, and the memory growth."""
    rows = []
    for key, label, target in (
        ("one_process", "one process (SQLite)", ONE_PROCESS_TARGET_MS),
        ("replicas_postgres", "across replicas (PostgreSQL NOTIFY)", REPLICAS_TARGET_MS),
        ("replicas_sqlite", "across processes (one SQLite file)", REPLICAS_TARGET_MS),
    ):
        found = results.get(key)
        if not found:
            rows.append(row(f"job webhook to stream event, {label}", "not measured"))
            continue
        rows.append(row(
            f"job webhook to stream event, {label}: median / p99 (n={found['n']})",
            f"{found['median_ms']} / {found['p99_ms']}", "ms", f"<= {target:g}",
            found["p99_ms"] <= target,
        ))
    mem = results["memory"]
    rows.append(row(
        f"VmRSS: no stream / {mem['streams']} streams open",
        f"{mem['rss_before_mib']} / {mem['rss_with_streams_mib']}", "MiB",
    ))
    judged = mem["streams"] >= 1000
    rows.append(row(
        f"memory of {mem['streams']} open streams", mem["growth_mib"], "MiB",
        f"<= {MEMORY_TARGET_MIB:g}" if judged else "",
        mem["growth_mib"] <= MEMORY_TARGET_MIB if judged else None,
    ))
    return {"results": results, "rows": rows}

