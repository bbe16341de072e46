"""A whole ghapp set-up on loopback: the GitHub simulator, ghapp, and an orchestrator stand-in.

The demo runs on it, and so do the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ghapp.config import Settings
from ghapp.runner import BackgroundServer
from ghapp.simulator import Simulator
from ghapp.simulator.auth import generate_private_key_pem
from ghapp.simulator.receiver import CallbackReceiver
from ghapp.web.app import create_app


@functools.cache
def app_key() -> str:
    """One simulated App key per process: RSA generation is slow and the key is not a secret."""
    return generate_private_key_pem()


def serve_settings() -> dict[str, str]:
    """The least environment `ghapp serve` accepts, so a test can make one setting the problem."""
    return {
        "APP_ID": "1",
        "PRIVATE_KEY": app_key(),
        "WEBHOOK_SECRET": "w" * 32,
        "ORCHESTRATOR_TOKEN": "t" * 32,
        "CALLBACK_SECRET": "c" * 32,
    }


@dataclass
class Stack:
    """The three parts, started together; ghapp can be stopped and started on its own."""

    sim: Simulator
    receiver: CallbackReceiver
    settings: Settings
    retry_base: float = 1.0
    request_timeout: float = 30.0
    port: int = 0
    server: BackgroundServer | None = None
    base_url: str = ""
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    # Wraps ghapp's ASGI app before it is served (the sandbox: loopback Hosts only).
    wrap_app: Callable[[Any], Any] | None = None

    @classmethod
    async def start(
        cls,
        database_url: str,
        *,
        step_delay: float = 0.0,
        retry_base: float = 0.05,
        request_timeout: float = 30.0,
        port: int = 0,
        github_port: int = 0,
        configure_simulator: Callable[[Simulator], None] | None = None,
        wrap_app: Callable[[Any], Any] | None = None,
        **overrides: Any,
    ) -> Stack:
        """Start the simulator, the stand-in and ghapp (settings overridable; ports 0: any)."""
        webhook_secret = secrets.token_hex(16)
        sim = Simulator(
            app_id=424242,
            private_key_pem=app_key(),
            webhook_secret=webhook_secret,
            step_delay=step_delay,
        )
        receiver = CallbackReceiver(secret=secrets.token_hex(16))
        stack = cls(sim=sim, receiver=receiver, settings=Settings(_env_file=None))
        stack.retry_base = retry_base
        stack.request_timeout = request_timeout
        stack.port = port
        stack.wrap_app = wrap_app
        if configure_simulator is not None:
            configure_simulator(sim)
        try:
            await sim.start(port=github_port)
            await receiver.start()
            values = {"callback_retry_base": retry_base, **overrides}
            stack.settings = settings_for(sim, receiver, database_url, **values)
            stack.session = aiohttp.ClientSession()
            await stack.start_ghapp()
        except BaseException:
            await stack.close()
            raise
        return stack

    async def start_ghapp(self) -> str:
        """Start (or start again) ghapp on the same database; webhooks go to it."""
        app = create_app(
            self.settings, retry_base=self.retry_base, request_timeout=self.request_timeout
        )
        served = self.wrap_app(app) if self.wrap_app is not None else app
        self.server = BackgroundServer(served, port=self.port)
        self.base_url = await self.server.start()
        self.sim.webhook_url = self.base_url + self.settings.webhook_path
        return self.base_url

    async def stop_ghapp(self) -> None:
        """Stop ghapp only; the simulator and the stand-in go on."""
        if self.server is not None:
            await self.server.stop()
            self.server = None

    @property
    def auth(self) -> dict[str, str]:
        """The orchestrator's Authorization header."""
        return {"Authorization": f"Bearer {self.settings.orchestrator_token}"}

    async def deploy(
        self, repository: str, *, headers: dict[str, str] | None = None, **body: Any
    ) -> tuple[int, dict[str, Any]]:
        """POST /api/v1/deployments as the orchestrator; returns (status, JSON body)."""
        assert self.session is not None
        async with self.session.post(
            f"{self.base_url}/api/v1/deployments",
            json={"repository": repository, **body},
            headers={**self.auth, **(headers or {})},
        ) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        """GET an API path as the orchestrator."""
        assert self.session is not None
        async with self.session.get(f"{self.base_url}{path}", headers=self.auth) as response:
            return response.status, await response.json()

    async def close(self) -> None:
        """Stop everything."""
        await self.stop_ghapp()
        if self.session is not None:
            await self.session.close()
        await self.receiver.stop()
        await self.sim.stop()


def settings_for(
    sim: Simulator, receiver: CallbackReceiver, database_url: str, **overrides: Any
) -> Settings:
    """Settings for a ghapp that talks to this simulator and calls this (started) receiver back."""
    values: dict[str, Any] = {
        "app_id": str(sim.app_id),
        "private_key": sim.private_key_pem,
        "webhook_secret": [sim.webhook_secret],
        "github_api_url": sim.api_url,
        "orchestrator_token": secrets.token_hex(16),
        "orchestrator_callback_url": receiver.url,
        "callback_secret": receiver.secret,
        "database_url": database_url,
        **overrides,
    }
    return Settings(_env_file=None, **values)


PORT_BLOCK = 1000
_next_port = itertools.count()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    # Tests run in parallel give each process its own block of ports below the kernel's
    # ephemeral range (GHAPP_TEST_PORT_BASE): no two workers pick the same port, and no
    # outgoing connection takes it between this pick and the server's bind.
    base = os.environ.get("GHAPP_TEST_PORT_BASE")
    for _ in range(PORT_BLOCK if base else 0):
        port = int(base or 0) + next(_next_port) % PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        picked: int = sock.getsockname()[1]
        return picked


def settings_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment that makes `ghapp serve` run with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GHAPP_TEST")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        env[name.upper()] = str(value)
    env.update(HOST="127.0.0.1", PORT=str(port), LOG_FORMAT="json")
    return env


class ProcessServer:
    """`ghapp serve` as a real child process, for tests that kill it."""

    def __init__(
        self, settings: Settings, log_path: str | None = None, *, workers: int = 1
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = settings_env(settings, self.port)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 30.0) -> str:
        """Start the process and wait until /healthz answers."""
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115, ASYNC230 - for the child
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ghapp",
            "serve",
            "--workers",
            str(self.workers),
            env=self.env,
            stdout=log,
            stderr=log,
            # Its own process group: a kill reaches uvicorn's worker processes too.
            start_new_session=True,
        )
        log.close()
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"ghapp serve exited with {self.process.returncode}")
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return self.url
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no clean-up runs, as when a machine dies."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, and wait for a graceful exit."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()
