"""pytest plugin (entry point `pytest11`): the `ghapp_sandbox` fixture for testing an orchestrator.

    def test_deploy_fails_at_ssh(ghapp_sandbox):
        ghapp_sandbox.scenario("acme/shop", outcome="failure", log=["Connection refused"])
        async def go():
            async with ghapp_sandbox.client() as client:
                dep = await client.deploy("acme/shop")
                return await client.wait(dep.id, interval=0.2)
        assert asyncio.run(go()).verdict.status == "failure"

The sandbox (the GitHub simulator and ghapp, SQLite in a temporary directory) runs on free ports
in a thread of its own, so the fixture serves sync and async tests alike. Nothing of ghapp is
imported until a test asks for the fixture: installing the plugin costs other suites nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from ghapp.client import Client
    from ghapp.core.models import Deployment
    from ghapp.simulator.sandbox import Sandbox
    from ghapp.simulator.scenarios import Scenario

__all__ = ["GhappSandbox", "SandboxCallback", "ghapp_sandbox"]

T = TypeVar("T")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class SandboxCallback:
    """A callback the sandbox's orchestrator stand-in received, its signatures checked."""

    event: str
    delivery: str
    deployment: Deployment
    body: bytes
    headers: dict[str, str]


class GhappSandbox:
    """A sandbox running in a background thread; what the `ghapp_sandbox` fixture gives."""

    def __init__(self, **options: Any) -> None:
        """Start the sandbox (options as `Sandbox.start`: ports, scenarios, database_url...)."""
        from ghapp.simulator.sandbox import Sandbox

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ghapp-sandbox", daemon=True
        )
        self._thread.start()
        try:
            self.sandbox: Sandbox = self._call(Sandbox.start(**options), START_TIMEOUT)
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the sandbox's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        """ghapp's base URL."""
        return self.sandbox.url

    @property
    def token(self) -> str:
        """The orchestrator's bearer token."""
        return self.sandbox.token

    @property
    def callback_secret(self) -> str:
        """The key that signs every callback (for `ghapp.client.verify_callback`)."""
        return self.sandbox.callback_secret

    @property
    def github_api_url(self) -> str:
        """The simulated GitHub (scenarios at `/sandbox/scenarios/OWNER/REPO`)."""
        return self.sandbox.github_api_url

    def env(self) -> dict[str, str]:
        """GHAPP_URL, ORCHESTRATOR_TOKEN, CALLBACK_SECRET and GITHUB_API_URL."""
        return self.sandbox.env()

    def client(self, **options: Any) -> Client:
        """A `ghapp.client.Client` for this sandbox (use it in `async with`)."""
        from ghapp.client import Client

        return Client(self.url, self.token, **options)

    def scenario(self, repository: str, **fields: Any) -> Scenario:
        """Set what the repository's next deploys do (fields of a scenario; none: the default)."""
        from ghapp.simulator.scenarios import check_repository, parse_scenario

        full_name = check_repository(repository)
        scenario = parse_scenario(fields)

        async def apply() -> None:
            self.sandbox.set_scenario(full_name, scenario)

        self._call(apply())
        return scenario

    @property
    def callbacks(self) -> list[SandboxCallback]:
        """Every deployment callback received so far whose signatures check out
        (X-Ghapp-Signature-256, and the Standard Webhooks headers within 5 minutes of arrival),
        oldest first."""
        from ghapp.core.models import Deployment
        from ghapp.core.signatures import header

        found = []
        for received in list(self.sandbox.stack.receiver.received):
            event = header(received.headers, "X-Ghapp-Event") or ""
            # Only deployments' callbacks: `ghapp check`'s ping (and events a newer server
            # may send) carry no deployment.
            if not received.signature_ok or not event.startswith("deployment."):
                continue
            found.append(
                SandboxCallback(
                    event=event,
                    delivery=header(received.headers, "X-Ghapp-Delivery") or "",
                    deployment=Deployment.model_validate_json(received.body),
                    body=received.body,
                    headers=dict(received.headers),
                )
            )
        return found

    def _find(self, deployment_id: str, event: str) -> SandboxCallback | None:
        return next(
            (c for c in self.callbacks if c.deployment.id == deployment_id and c.event == event),
            None,
        )

    async def wait_for_callback(
        self, deployment_id: str, *, event: str = "deployment.completed", timeout: float = 30.0
    ) -> SandboxCallback:
        """The first callback about a deployment (of this event), waiting for it if need be."""
        deadline = time.monotonic() + timeout
        while (found := self._find(deployment_id, event)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} callback for {deployment_id} in {timeout:g}s")
            await asyncio.sleep(0.02)
        return found

    def close(self) -> None:
        """Stop the sandbox and its thread."""
        try:
            self._call(self.sandbox.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


@pytest.fixture
def ghapp_sandbox() -> Iterator[GhappSandbox]:
    """ghapp and a simulated GitHub on free ports, for one test (see `GhappSandbox`)."""
    sandbox = GhappSandbox()
    try:
        yield sandbox
    finally:
        sandbox.close()
