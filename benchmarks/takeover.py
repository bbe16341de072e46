"""Takeover: how soon the surviving replica finishes a SIGKILLed replica's work.

Method: PostgreSQL (`GHAPP_TEST_POSTGRES_URL`; its schema is dropped; skipped without it). Two
`ghapp serve` replicas (child processes) behind the round-robin balancer, the simulator and
the callback receiver in this process. N deployments (`--quick`: 20; else 100), half
succeeding, half failing (failure reports to gather), are requested through the balancer with
runs taking 0.3 s a step, and the receiver takes 0.3 s to answer each callback, so that when
one replica is SIGKILLed (once a fifth of the verdicts have arrived) it holds leases on
callbacks being sent, reports being gathered and polls. Its webhooks are then lost (the
balancer skips it) and `POLL_AFTER` is 2 s. Measured from the kill: the time until every
deployment's verdict has reached the receiver (target: 15 s; before issue 17 the leases ran
30 s), and callbacks sent twice (allowed only for a replica killed between the receiver's
2xx and recording it; the repeat carries the same X-Ghapp-Delivery).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import row
from benchmarks.reconcile import POSTGRES_ENV, reset_postgres
from ghapp.cli.demo import demo_workflows
from ghapp.simulator.balancer import RoundRobinBalancer
from ghapp.simulator.stack import ProcessServer, Stack

NAME = "takeover"
TARGET_S = 15.0


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """One kill; the figures."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return {"skipped": f"{POSTGRES_ENV} not set",
                "rows": [row("takeover after SIGKILL", "skipped (no PostgreSQL)")]}
    total = 20 if quick else 100
    await reset_postgres(url)
    stack = await Stack.start(url, retry_base=0.05, poll_after=2)
    await stack.stop_ghapp()
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    replicas = [ProcessServer(stack.settings, str(tmp / f"r{n}.log")) for n in (1, 2)]
    balancer = RoundRobinBalancer([])
    try:
        balancer.upstreams = list(await asyncio.gather(*(r.start() for r in replicas)))
        stack.base_url = await balancer.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        stack.sim.step_delay = 0.3
        stack.receiver.delay = 0.3
        answers = await asyncio.gather(*(
            stack.deploy("acme/shop" if n % 2 else "acme/api", headers={"Idempotency-Key": f"k{n}"})
            for n in range(total)
        ))
        ids = {body["id"] for status, body in answers if status == 202}
        # Killed once a fifth of the verdicts are out: the rest are in every stage of flight.
        for _ in range(600):
            if len(stack.receiver.delivered()) >= total // 5:
                break
            await asyncio.sleep(0.05)
        killed_at = time.time()
        await replicas[0].kill()
        deadline = time.monotonic() + 90
        while {c.deployment["id"] for c in stack.receiver.delivered()} < ids:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a repeat would have come by now
        delivered = stack.receiver.delivered()
        first: dict[str, float] = {}
        for callback in delivered:
            first.setdefault(callback.deployment["id"], callback.arrived_at)
        repeats = Counter(c.headers.get("X-Ghapp-Delivery") for c in delivered)
        out = {
            "deployments": total,
            "verdicts": len(first),
            "last_verdict_after_kill_s": round(max(first.values()) - killed_at, 2)
            if len(first) == len(ids) else None,
            "after_kill": sum(1 for t in first.values() if t > killed_at),
            "repeated_callbacks": sum(n - 1 for n in repeats.values()),
        }
    finally:
        await balancer.stop()
        for replica in replicas:
            await replica.kill()
        await stack.close()
    last = out["last_verdict_after_kill_s"]
    out["rows"] = [
        row(f"{total} deployments, one of two replicas SIGKILLed: last verdict after the kill",
            last if last is not None else f"{out['verdicts']}/{total} verdicts", "s",
            f"<= {TARGET_S:g}", last is not None and last <= TARGET_S),
        row("verdicts that came after the kill", out["after_kill"]),
        row("callbacks repeated (same X-Ghapp-Delivery)", out["repeated_callbacks"]),
    ]
    return out
