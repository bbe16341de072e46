"""The sandbox: the simulator and ghapp as long-lived servers, any repository installed on demand.

`ghapp sandbox` runs one on fixed ports; `ghapp.testing`'s fixture runs one on free ports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghapp.simulator.loopback import LoopbackOnly
from ghapp.simulator.scenarios import ApplyScenario, Scenario, ScenarioBook, attach
from ghapp.simulator.simulator import Simulator
from ghapp.simulator.stack import Stack, free_port

# Silence about a deployment before ghapp polls GitHub: short, so that a scenario that loses its
# webhooks still ends within seconds (a real server waits POLL_AFTER, 60 s by default).
SANDBOX_POLL_AFTER = 3.0


@dataclass
class Sandbox:
    """A running sandbox; `env()` is what an orchestrator needs to talk to it."""

    stack: Stack
    book: ScenarioBook
    apply: ApplyScenario
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    # The simulated App's private key as a file (PRIVATE_KEY_PATH), readable by its owner only.
    _key_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @classmethod
    async def start(
        cls,
        *,
        port: int = 0,
        github_port: int = 0,
        callback_url: str | None = None,
        scenarios: ScenarioBook | None = None,
        database_url: str | None = None,
        github_user: str | None = None,
        github_teams: tuple[str, ...] = (),
        **overrides: Any,
    ) -> Sandbox:
        """Start the simulator on `github_port` and ghapp on `port` (0: any free port)."""
        book = scenarios or ScenarioBook()
        tmp = None
        if database_url is None:
            tmp = tempfile.TemporaryDirectory(prefix="ghapp-sandbox-")
            database_url = f"sqlite:///{tmp.name}/ghapp.db"
        applied: list[ApplyScenario] = []
        settings: dict[str, Any] = {"poll_after": SANDBOX_POLL_AFTER, **overrides}
        if callback_url is not None:
            settings["orchestrator_callback_url"] = callback_url
        signin_user = _signin(github_user, github_teams)
        if github_user is not None:
            # Sign in with GitHub: the simulator's authorize page signs in `github_user`, a
            # member (and admin) of `github_teams`.
            port = port or free_port()
            settings.update(
                page_auth="github", page_teams=",".join(github_teams),
                page_admin_teams=",".join(github_teams), public_url=f"http://127.0.0.1:{port}",
                github_client_id=SANDBOX_CLIENT_ID, github_client_secret=SANDBOX_CLIENT_SECRET,
            )

        def configure(sim: Simulator) -> None:
            applied.append(attach(sim, book))
            signin_user(sim)
        try:
            stack = await Stack.start(
                database_url,
                retry_base=1.0,
                port=port,
                github_port=github_port,
                configure_simulator=configure,
                # ghapp, like the simulator, answers only Hosts on loopback (DNS rebinding).
                wrap_app=LoopbackOnly,
                **settings,
            )
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
        sandbox = cls(stack=stack, book=book, apply=applied[0], _tmp=tmp)
        try:
            sandbox._key_dir = _write_key(stack.sim.private_key_pem)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    @property
    def url(self) -> str:
        """ghapp's base URL."""
        return self.stack.base_url

    @property
    def token(self) -> str:
        """The orchestrator's bearer token."""
        return self.stack.settings.orchestrator_token or ""

    @property
    def callback_secret(self) -> str:
        """The key that signs every callback."""
        return self.stack.settings.callback_secret or ""

    @property
    def github_api_url(self) -> str:
        """The simulated GitHub API (where `/sandbox/scenarios/...` also lives)."""
        return self.stack.sim.api_url

    @property
    def private_key_path(self) -> str:
        """The simulated App's private key, as a file of mode 0600 (gone once closed)."""
        assert self._key_dir is not None, "the sandbox is closed"
        return str(Path(self._key_dir.name) / KEY_FILE)

    def env(self) -> dict[str, str]:
        """The settings a client needs, as environment variables (the lines of a `.env`): an
        orchestrator's, and the App's, for `ghapp deliveries` and `ghapp replay`."""
        sim = self.stack.sim
        return {
            "GHAPP_URL": self.url,
            "ORCHESTRATOR_TOKEN": self.token,
            "CALLBACK_SECRET": self.callback_secret,
            "GITHUB_API_URL": self.github_api_url,
            "APP_ID": str(sim.app_id),
            "PRIVATE_KEY_PATH": self.private_key_path,
            "WEBHOOK_SECRET": sim.webhook_secret,
        }

    def set_scenario(self, repository: str, scenario: Scenario | None) -> None:
        """Set a repository's scenario (None: back to the default); call on the sandbox's loop."""
        self.apply(repository, scenario)

    async def close(self) -> None:
        """Stop both servers and remove the temporary database and key."""
        try:
            await self.stack.close()
        finally:
            for tmp in (self._tmp, self._key_dir):
                if tmp is not None:
                    tmp.cleanup()
            self._tmp = self._key_dir = None


KEY_FILE = "app-key.pem"


def _write_key(pem: str) -> tempfile.TemporaryDirectory[str]:
    """A new private folder holding the key in a file of mode 0600 (created so, never wider)."""
    folder = tempfile.TemporaryDirectory(prefix="ghapp-sandbox-key-")  # mode 0700
    try:
        path = Path(folder.name) / KEY_FILE
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(pem)
    except BaseException:
        folder.cleanup()
        raise
    return folder


# The sandbox's OAuth client (sign in with GitHub): fixed, as nothing outside loopback reaches it.
SANDBOX_CLIENT_ID = "Iv23lisandbox0000001"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret-0000000000000000"


def _signin(login: str | None, teams: tuple[str, ...]) -> Callable[[Simulator], None]:
    """What sets up the simulator's sign-in: the user its authorize page signs in, their teams."""

    def configure(sim: Simulator) -> None:
        if login is None:
            return
        sim.client_id, sim.client_secret = SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
        sim.world.client_id = SANDBOX_CLIENT_ID
        sim.oauth.login = login
        for team in teams:
            sim.oauth.add_member(team, login)

    return configure
