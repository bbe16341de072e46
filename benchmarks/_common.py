"""Shared pieces of the suite: machine facts, child processes, the simulator rig, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from ghapp.config import Settings
from ghapp.simulator import Simulator
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.simulator.stack import app_key, settings_for
from ghapp.simulator.stack import free_port as free_port  # the benchmarks import it from here

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("GHAPP_REFERENCE", REPO.parent / "shared" / "github-reference"))
SERVER_CPUS = "0"  # the server under test (one worker)
LOADGEN_CPUS = "1"  # the load generator
BOTH_CPUS = "0,1"  # two server workers on a 2-core machine
MIB = 1024 * 1024


# --- facts and numbers ------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: date, cores, CPU, Python, commit."""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "taskset": shutil.which("taskset") is not None,
        "wrk": shutil.which("wrk") is not None,
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """n, median, p99, min, max and mean of durations in seconds, reported in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def row(
    metric: str, value: float | int | str | None, unit: str = "", target: str = "",
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the printed table (and of the JSON's `rows`)."""
    return {"metric": metric, "value": value, "unit": unit, "target": target, "met": met}


def rss_mib(pid: int, field_name: str = "VmRSS") -> float | None:
    """A process's resident memory from /proc/PID/status, in MiB (VmHWM: its peak)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants (from /proc/PID/task/*/children)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                found += tree_pids(int(child))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process and its descendants, all threads."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for one in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{one}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- child processes --------------------------------------------------------------------


class Children:
    """Every process the suite starts, each in its own session, so all of it can be stopped."""

    def __init__(self) -> None:
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.adopted: set[int] = set()

    async def spawn(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, cpus: str | None = None,
        log_path: Path | None = None, stdout: int | None = None,
    ) -> asyncio.subprocess.Process:
        """Start a process (pinned with taskset when `cpus` is given and taskset exists)."""
        command = list(argv)
        if cpus and shutil.which("taskset"):
            command = ["taskset", "-c", cpus, *command]
        log = open(log_path or os.devnull, "ab")  # noqa: SIM115, ASYNC230 - for the child
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=REPO, start_new_session=True,
                stdout=log if stdout is None else stdout, stderr=log,
            )
        finally:
            log.close()
        self.procs[proc.pid] = proc
        return proc

    def adopt(self, proc: asyncio.subprocess.Process | None) -> None:
        """Also stop this process (started elsewhere, in our process group) at exit."""
        if proc is not None:
            self.adopted.add(proc.pid)

    async def stop(self, proc: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
        """SIGTERM its whole session, wait, then SIGKILL what is left."""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their supervisor
        self.procs.pop(proc.pid, None)

    def kill_all(self) -> None:
        """SIGKILL everything still running (at exit, on interrupt)."""
        for pid in list(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.adopted):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.procs.clear()
        self.adopted.clear()


CHILDREN = Children()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, the repository on PYTHONPATH, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


async def wait_http(url: str, timeout: float = 30.0, proc: Any = None) -> float:
    """Poll a URL until it answers 200; the monotonic time it first did."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.01)


# --- the simulator rig ------------------------------------------------------------------


@dataclass
class Rig:
    """The GitHub simulator and a callback receiver (it notes arrival times) here; ghapp apart."""

    sim: Simulator
    receiver: CallbackReceiver
    settings: Settings
    session: aiohttp.ClientSession
    base_url: str = ""

    @classmethod
    async def start(cls, database: Path, **overrides: Any) -> Rig:
        """Start the simulator and the receiver; settings for a ghapp on `database`."""
        webhook_secret = secrets.token_hex(16)
        sim = Simulator(app_id=424242, private_key_pem=app_key(), webhook_secret=webhook_secret)
        receiver = CallbackReceiver(secret=secrets.token_hex(16))
        await sim.start()
        try:
            await receiver.start()
            values = {"poll_after": 3600, "log_level": "info", "log_format": "json", **overrides}
            settings = settings_for(sim, receiver, f"sqlite:///{database}", **values)
        except BaseException:
            await receiver.stop()
            await sim.stop()
            raise
        return cls(sim, receiver, settings, aiohttp.ClientSession())

    def use(self, base_url: str) -> None:
        """Point the orchestrator calls and the simulator's webhooks at this ghapp."""
        self.base_url = base_url
        self.sim.webhook_url = base_url + self.settings.webhook_path

    @property
    def auth(self) -> dict[str, str]:
        """The orchestrator's Authorization header."""
        return {"Authorization": f"Bearer {self.settings.orchestrator_token}"}

    async def deploy(self, repository: str, **body: Any) -> dict[str, Any]:
        """POST /api/v1/deployments; the Deployment (raises unless 202)."""
        # A 503 means nothing was dispatched (GitHub slow to answer on a loaded machine): ask
        # again after Retry-After, as an orchestrator does.
        for attempt in range(5):
            async with self.session.post(
                f"{self.base_url}/api/v1/deployments",
                json={"repository": repository, **body},
                headers=self.auth,
            ) as response:
                answer: dict[str, Any] = await response.json()
                if response.status == 503 and attempt < 4:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status != 202:
                    raise RuntimeError(f"deploy answered {response.status}: {answer}")
                break
        # A documented 202 may carry `run: null` (GitHub's answer to the dispatch not known yet,
        # or a 5xx): the run is found later, so read the deployment until it names one.
        deadline = time.monotonic() + 60
        while answer.get("run") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            async with self.session.get(
                f"{self.base_url}/api/v1/deployments/{answer['id']}", headers=self.auth
            ) as response:
                answer = await response.json()
        return answer

    async def close(self) -> None:
        """Stop the simulator, the receiver and the client session."""
        await self.session.close()
        await self.receiver.stop()
        await self.sim.stop()


def sqlite_count(database: Path, query: str) -> int:
    """One integer from the SQLite database (read-only, from this process)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        value = conn.execute(query).fetchone()[0]
    finally:
        conn.close()
    return int(value or 0)


def python() -> str:
    """The interpreter that runs the suite (and so the servers under test)."""
    return sys.executable
