"""`ghapp serve --workers N`: one socket per worker, a clean stop, and no orphan workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from ghapp.cli.main import build_parser
from ghapp.cli.serving import reuse_port_socket
from ghapp.simulator.stack import ProcessServer, Stack, free_port, settings_env


def test_workers_can_each_listen_on_the_same_port() -> None:
    port = free_port()
    first, second = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    try:
        first.listen()
        second.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()


def workers_of(pid: int) -> list[int]:
    """The worker processes of `ghapp serve --workers N`."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if "--reuse-port" in Path(f"/proc/{child}/cmdline").read_text():
                found.append(int(child))
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def loaded_files(pid: int) -> set[str]:
    """The shared libraries and extension modules a process has mapped."""
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()}


async def test_two_workers_stop_cleanly_and_a_dead_worker_stops_the_rest(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await stack.stop_ghapp()
    try:
        server = ProcessServer(stack.settings, str(tmp_path / "serve.log"), workers=2)
        await server.start()
        assert server.process is not None
        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                async with session.get(server.url + "/healthz") as response:
                    assert response.status == 200
        assert len(workers_of(server.process.pid)) == 2
        # The supervisor loads nothing of the app: a few MiB, not a worker's weight.
        assert rss_mib(server.process.pid) <= 30
        assert not [m for m in loaded_files(server.process.pid) if "pydantic" in m]
        await server.stop()
        assert server.process.returncode == 0

        server = ProcessServer(stack.settings, str(tmp_path / "serve2.log"), workers=2)
        await server.start()
        assert server.process is not None
        dead, other = workers_of(server.process.pid)
        os.kill(dead, signal.SIGKILL)
        async with asyncio.timeout(20):
            assert await server.process.wait() == 1
        with pytest.raises(ProcessLookupError):  # stopped and reaped, not left behind
            os.kill(other, 0)

        # A supervisor killed outright takes its workers with it (nobody else would stop them).
        server = ProcessServer(stack.settings, str(tmp_path / "serve3.log"), workers=2)
        await server.start()
        assert server.process is not None
        orphans = workers_of(server.process.pid)
        server.process.kill()
        await server.process.wait()
        async with asyncio.timeout(20):
            while [pid for pid in orphans if _alive(pid)]:  # noqa: ASYNC110 - other processes
                await asyncio.sleep(0.1)
    finally:
        await stack.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has stopped already
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_workers_must_be_a_whole_number_from_one(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["serve", "--workers", workers])
    assert stopped.value.code == 2
    assert "at least 1" in capsys.readouterr().err


# `ghapp serve` in a child that, once /readyz answers, prints the modules it loaded and stops.
SERVE_AND_LIST_MODULES = """
import json, os, signal, sys, threading, time, urllib.request
from ghapp.cli.main import main

def list_modules() -> None:
    while True:
        try:
            with urllib.request.urlopen(sys.argv[1], timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    time.sleep(1)  # what the start-up left to the background (reconciliation, the sweep)
    print(json.dumps(sorted(sys.modules)), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=list_modules, daemon=True).start()
sys.exit(main(["serve"]))
"""

# Loaded only when a path needs them: the ORM never; alembic when the schema is behind; aiohttp
# and cryptography at the first outgoing request; PyYAML at the first failure to classify;
# uvicorn's command line (click, watchfiles) never by `ghapp serve`.
NOT_AT_IDLE = [
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "alembic",
    "aiohttp",
    "cryptography",
    "jwt",
    "yaml",
    "click",
    "watchfiles",
    "multiprocessing",
    "uvicorn.main",
    # Traces are off unless the OTEL_* variables ask (tests/test_traces.py turns them on).
    "opentelemetry",
]


async def test_serving_an_existing_database_loads_no_optional_library(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await stack.stop_ghapp()  # the schema exists: the restart of a running installation
    try:
        port = free_port()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVE_AND_LIST_MODULES,
            f"http://127.0.0.1:{port}/readyz",
            env=settings_env(stack.settings, port),
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, _ = await child.communicate()
        # uvicorn stops gracefully, then raises the SIGTERM it caught again.
        assert child.returncode in (0, -signal.SIGTERM)
        loaded = set(json.loads(out))
        assert "ghapp.web.app" in loaded and "sqlalchemy" in loaded
        assert [name for name in NOT_AT_IDLE if name in loaded] == []
    finally:
        await stack.close()
