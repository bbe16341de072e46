"""`ghapp serve --workers N`: N processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own workers share one listening socket, and whichever process wakes first accepts a
whole burst of new connections: with long-lived connections (a proxy's keep-alive pool, a load
generator) one worker can end up with nearly all of them (the ingest benchmark once kept 0.97 of
two cores busy). With a socket each, the kernel spreads connections over the workers.

The supervisor is a few megabytes: this module imports only the standard library and none of
the app; each worker is `python -m ghapp serve --reuse-port`, which reads its own settings.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# The hidden `serve` option a worker is started with.
WORKER_FLAG = "--reuse-port"


# prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _say(message: str, **fields: Any) -> None:
    # One JSON line on stderr, the shape of ghapp's own log lines (no logging set-up here).
    line = {"level": "error", "logger": "ghapp.serving", "message": message, **fields}
    print(json.dumps(line), file=sys.stderr, flush=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A child set-up that has Linux send the worker SIGTERM when the supervisor dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return arrange


def serve_workers(workers: int) -> int:
    """Run the workers until SIGTERM/SIGINT (0) or until one of them dies (its status, or 1)."""
    command = [sys.executable, "-m", "ghapp", "serve", WORKER_FLAG]
    # A supervisor killed outright (SIGKILL, the OOM killer) must not leave its workers
    # serving on the port with nobody to stop them.
    arrange = _die_with_parent()
    processes = [subprocess.Popen(command, preexec_fn=arrange) for _ in range(workers)]
    stopping = False

    def stop(_signum: int = 0, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed: int | None = None
    while alive := [process for process in processes if process.poll() is None]:
        # Checked before each wait, so a worker that died at any moment is seen.
        if not stopping and len(alive) < len(processes):
            dead = next(p for p in processes if p.poll() is not None)
            failed = dead.returncode
            _say("a worker exited: stopping the others", worker=dead.pid, exit_code=failed)
            stop()
        time.sleep(0.2)
    # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    if failed is None and stopping and all(p.returncode in clean for p in processes):
        return 0
    return failed if failed not in (None, 0) and failed > 0 else 1

