"""The cost of OpenTelemetry traces on the ingest and verdict benchmarks: on and off, side by
side (`python -m benchmarks.tracing [--quick] [--json FILE]`).

Method:

* A sink in this process stands for the OpenTelemetry Collector: `POST /v1/traces` answered
  `200` at once (it counts requests and bytes, decodes nothing), on 127.0.0.1.
* "On" is `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at the sink and `OTEL_BSP_SCHEDULE_DELAY=200`
  (the SDK's batch exporter, as an operator would run it); "off" is no OTEL_* variable at all
  (nothing of OpenTelemetry is imported).
* Ingest: the ingest benchmark's realistic mix and load (`benchmarks/ingest.py`: wrk, one
  worker on core 0), its 20 own deployments made by a ghapp with tracing on (so that they have
  a trace), then `ghapp serve` measured off, on, off, on, ... (ROUNDS each); the ratio judged is
  the median of the per-round ratios on / off of deliveries per second (target >= 0.95: a
  webhook is not traced, so tracing should cost it nothing).
* Verdict: the verdict latency benchmark's method (`benchmarks/latency.py`: `ghapp serve` in a
  child, deployments one after another driven by hand, from the simulator's
  `workflow_run.completed` to the callback's arrival) with N successes and N failures (5 MiB of
  log before the failing step; `--quick`: 3 and 256 KiB) per server, a server with tracing off
  then one with it on, VERDICT_ROUNDS times; the ratio judged is the median of the rounds'
  ratios on / off of the median latencies (target <= 1.10). With tracing on each verdict exports its
  root, wait, job, step, report and callback spans.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks import ingest, latency
from benchmarks._common import CHILDREN, MIB, Rig, free_port, machine, row, summary_ms
from ghapp.simulator.stack import ProcessServer, settings_env

ROUNDS = 3
VERDICT_ROUNDS = 3
VERDICTS = 50
INGEST_TARGET = 0.95
VERDICT_TARGET = 1.10


class Sink:
    """An OTLP/HTTP endpoint that accepts every export and counts it."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _export(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.bytes += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def otel_env(sink: Sink) -> dict[str, str]:
    """The variables that turn traces on."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}


@asynccontextmanager
async def environ(extra: dict[str, str]) -> AsyncIterator[None]:
    """Children started meanwhile inherit these variables (ProcessServer copies os.environ)."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def ingest_rounds(quick: bool, tmp: Path, sink: Sink) -> dict[str, Any]:
    """ghapp's ingest rate with tracing off and on, in turn."""
    duration, warmup = (1, 0) if quick else (10, 2)
    rig = await Rig.start(tmp / "ingest.db")
    try:
        env = settings_env(rig.settings, 0)
        env_on = {**env, **otel_env(sink)}
        path, secret = rig.settings.webhook_path, rig.settings.webhook_secret[0]
        first = await ingest.start_server("ghapp", 1, env_on, tmp)
        try:
            own = await ingest.own_deployments(rig, first, 4 if quick else 20)
        finally:
            await CHILDREN.stop(first.proc)
        base, _ = ingest.template()
        realistic = tmp / "realistic.req"
        bodies = ingest.make_bodies(base, own, ingest.REALISTIC)
        job_base, _ = ingest.job_template()
        write = ingest.with_jobs(bodies, ingest.make_job_bodies(job_base, own))
        ingest.write_requests(realistic, write, secret)
        rounds = []
        for _ in range(1 if quick else ROUNDS):
            off = await ingest.measure("ghapp", 1, env, realistic, tmp, duration=duration,
                                       warmup=warmup, path=path)
            on = await ingest.measure("ghapp", 1, env_on, realistic, tmp, duration=duration,
                                      warmup=warmup, path=path)
            rounds.append({"off_rate": off["rate"], "on_rate": on["rate"],
                           "off_cpu_us": off["cpu_us_per_delivery"],
                           "on_cpu_us": on["cpu_us_per_delivery"],
                           "ratio": round(on["rate"] / max(off["rate"], 1e-9), 3)})
    finally:
        await rig.close()
    return {"rounds": rounds, "ratio": statistics.median(r["ratio"] for r in rounds)}


async def verdicts(quick: bool, tmp: Path, traced: bool, sink: Sink) -> dict[str, Any]:
    """The verdict latency series (successes, failures) with tracing on or off."""
    count = 3 if quick else VERDICTS
    log_bytes = 256 * 1024 if quick else 5 * MIB
    name = ("on" if traced else "off") + f"-{time.monotonic_ns()}"
    rig = await Rig.start(tmp / f"latency-{name}.db")
    server: ProcessServer | None = None
    stored = latency.StoredLogs()
    try:
        rig.sim.auto = False
        rig.sim.add_repository(latency.SUCCESS_REPO).add_workflow(latency.success_workflow())
        rig.sim.add_repository(latency.FAILURE_REPO).add_workflow(
            latency.failure_workflow(log_bytes)
        )
        async with environ(otel_env(sink) if traced else {}):
            server = ProcessServer(rig.settings, log_path=str(tmp / f"latency-{name}.log"))
            try:
                rig.use(await server.start(timeout=60))
            finally:
                CHILDREN.adopt(server.process)
        with stored.installed():
            await latency.drive(rig, latency.SUCCESS_REPO)
            await latency.drive(rig, latency.FAILURE_REPO, stored)
            successes, _ = await latency.series(rig, latency.SUCCESS_REPO, count, None)
            failures, _ = await latency.series(rig, latency.FAILURE_REPO, count, stored)
    finally:
        if server is not None:
            await server.stop()
        await rig.close()
    return {
        "success": [r["latency"] for r in successes],
        "failure": [r["latency"] for r in failures],
    }


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """Both benchmarks, off and on; rows and raw numbers."""
    sink = Sink()
    await sink.start()
    try:
        ingested = await ingest_rounds(quick, tmp, sink)
        ingest_exports = sink.requests
        # Off and on in turn, a fresh server each round: the machine's drift hits both.
        rounds = []
        for _ in range(1 if quick else VERDICT_ROUNDS):
            rounds.append((await verdicts(quick, tmp, False, sink),
                           await verdicts(quick, tmp, True, sink)))
    finally:
        await sink.stop()
    off = {k: summary_ms([x for r, _ in rounds for x in r[k]]) for k in ("success", "failure")}
    on = {k: summary_ms([x for _, r in rounds for x in r[k]]) for k in ("success", "failure")}
    per_round = {
        kind: [
            round(statistics.median(b[kind]) / max(statistics.median(a[kind]), 1e-9), 3)
            for a, b in rounds
        ]
        for kind in ("success", "failure")
    }
    ratios = {kind: statistics.median(values) for kind, values in per_round.items()}
    rows = [
        row("ingest, tracing on / off (median of rounds)", ingested["ratio"], "",
            f">= {INGEST_TARGET}", ingested["ratio"] >= INGEST_TARGET),
        row("success verdict median, off", off["success"]["median_ms"], "ms"),
        row("success verdict median, on", on["success"]["median_ms"], "ms"),
        row("success verdict, on / off (median of rounds)", ratios["success"], "",
            f"<= {VERDICT_TARGET}", ratios["success"] <= VERDICT_TARGET),
        row("failure verdict median, off", off["failure"]["median_ms"], "ms"),
        row("failure verdict median, on", on["failure"]["median_ms"], "ms"),
        row("failure verdict, on / off (median of rounds)", ratios["failure"], "",
            f"<= {VERDICT_TARGET}", ratios["failure"] <= VERDICT_TARGET),
        row("OTLP exports received (ingest / all)", f"{ingest_exports} / {sink.requests}", ""),
    ]
    return {"ingest": ingested, "verdict_off": off, "verdict_on": on, "ratios": ratios,
            "verdict_round_ratios": per_round,
            "exports": sink.requests, "export_bytes": sink.bytes, "rows": rows}


def main() -> None:
    """`python -m benchmarks.tracing [--quick] [--json FILE]`."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        began = time.time()
        result = asyncio.run(run(args.quick, Path(folder)))
    for item in result["rows"]:
        print(f"{item['metric']:<48} {item['value']!s:>16} {item.get('unit', ''):<4} "
              f"{item.get('target') or ''}")
    print(f"({time.time() - began:.0f} s)")
    if args.json:
        rows = result.pop("rows")
        args.json.write_text(json.dumps({"machine": machine(), **result, "rows": rows},
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
