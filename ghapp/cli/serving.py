"""`ghapp serve --workers N`: N processes, each listening on its own SO_REUSEPORT socket.

uvicorn's own workers share one listening socket, and whichever process wakes first accepts a
whole burst of new connections: with long-lived connections (a proxy's keep-alive pool, a load
generator) one worker can end up with nearly all of them (the ingest benchmark once kept 0.97 of
two cores busy). With a socket each, the kernel spreads connections over the workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from typing import Any

log = logging.getLogger("ghapp.serving")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from ghapp.runner import Server

    sock = reuse_port_socket(host, port)
    # Each worker builds its own app from the environment, like a replica.
    config = uvicorn.Config(
        "ghapp.web.app:app_from_env", factory=True, host=host, port=port, **options
    )
    Server(config).run(sockets=[sock])


def serve_workers(workers: int, host: str, port: int, options: dict[str, Any]) -> int:
    """Run the workers until SIGTERM/SIGINT (0) or until one of them dies (1)."""
    # Bound once here first, so a port in use fails at once with one clear error.
    reuse_port_socket(host, port).close()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, options), name=f"ghapp-worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    stopping = False

    def stop(_signum: int = 0, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while alive := [process for process in processes if process.is_alive()]:
        # Checked before each wait, so a worker that died at any moment is seen.
        if not stopping and len(alive) < len(processes):
            dead = next(p for p in processes if not p.is_alive())
            log.error(
                "a worker exited: stopping the others",
                extra={"worker": dead.name, "exit_code": dead.exitcode},
            )
            stop()
        wait([process.sentinel for process in alive], timeout=1.0)
    for process in processes:
        process.join()
    # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if stopping and all(p.exitcode in clean for p in processes) else 1
