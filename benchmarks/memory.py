"""Weight: idle memory of `ghapp serve`, and of `ghapp serve --workers 2` as a process tree.

Method (docs/benchmarks.md): SQLite in a temporary directory, the simulator in this
process. `ghapp serve` is started once on the empty database (it creates the schema), stopped,
and started again on that existing database; 5 s after its `/readyz` first answers 200, VmRSS
from /proc/PID/status is the idle figure (target: 64 MiB). The first start is reported too.
Then `ghapp serve --workers 2` on the same database: 5 s after `/readyz` (and after both
workers are up), VmRSS summed over the supervisor and its workers (target: two workers plus
30 MiB, i.e. 2 x the single idle figure + 30), and the supervisor's own VmRSS (target 30 MiB).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from benchmarks._common import (
    CHILDREN,
    Rig,
    child_env,
    free_port,
    python,
    row,
    rss_mib,
    tree_pids,
    wait_http,
)
from ghapp.simulator.stack import settings_env

NAME = "memory"
IDLE_TARGET_MIB = 64.0
SUPERVISOR_TARGET_MIB = 30.0
SETTLE_S = 5.0


async def idle(rig: Rig, tmp: Path, name: str, *extra: str) -> tuple[int, list[float]]:
    """Start `ghapp serve [extra]`; 5 s after /readyz, (its pid, VmRSS of pid then children)."""
    port = free_port()
    env = child_env(settings_env(rig.settings, port))
    proc = await CHILDREN.spawn([python(), "-m", "ghapp", "serve", *extra], env=env,
                                log_path=tmp / f"{name}.log")
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        workers = int(extra[-1]) if extra else 1
        for _ in range(300):  # the workers start after the supervisor
            if len(tree_pids(proc.pid)) > workers or workers == 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        sizes = [rss_mib(pid) or 0.0 for pid in tree_pids(proc.pid)]
        return proc.pid, sizes
    finally:
        await CHILDREN.stop(proc)


async def run(quick: bool, tmp: Path) -> dict[str, Any]:
    """The figures; the same in --quick (it is already short)."""
    rig = await Rig.start(tmp / "memory.db")
    try:
        _, first = await idle(rig, tmp, "first")
        _, again = await idle(rig, tmp, "restart")
        _, tree = await idle(rig, tmp, "workers", "--workers", "2")
    finally:
        await rig.close()
    single = again[0]
    out: dict[str, Any] = {
        "idle_first_rss_mib": first[0],
        "idle_rss_mib": single,
        "workers2_tree_rss_mib": round(sum(tree), 1),
        "workers2_supervisor_rss_mib": tree[0],
        "workers2_worker_rss_mib": tree[1:],
    }
    tree_target = round(2 * single + SUPERVISOR_TARGET_MIB, 1)
    out["rows"] = [
        row("idle RSS after a restart (5 s after /readyz)", single, "MiB",
            f"<= {IDLE_TARGET_MIB:g}", single <= IDLE_TARGET_MIB),
        row("idle RSS, first start (creates the schema)", first[0], "MiB"),
        row("--workers 2: tree RSS (supervisor + workers)", out["workers2_tree_rss_mib"], "MiB",
            f"<= {tree_target:g}", out["workers2_tree_rss_mib"] <= tree_target),
        row("--workers 2: supervisor RSS", tree[0], "MiB",
            f"<= {SUPERVISOR_TARGET_MIB:g}", tree[0] <= SUPERVISOR_TARGET_MIB),
    ]
    return out
