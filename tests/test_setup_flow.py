"""`ghapp setup`: the manifest flow against the simulator, down to a written `.env`."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ghapp.cli.envfile import update_env_file, write_secret_file
from ghapp.cli.main import main
from ghapp.cli.manifest import BUILTIN, MANIFEST_FILE, load_manifest
from ghapp.cli.setup import SetupOptions, SetupServer
from ghapp.config import Settings
from ghapp.simulator import Simulator
from ghapp.simulator.stack import free_port

EXISTING = """# my settings
ORCHESTRATOR_TOKEN=keep-me
APP_ID=1
export LOG_LEVEL=debug
PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----
old
-----END RSA PRIVATE KEY-----"

CALLBACK_SECRET='also kept'
"""


class Forms(HTMLParser):
    """The forms of a page: action, method and fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action"), "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value")


def forms_of(page: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(page)
    return parser.forms


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sim = Simulator(app_id=1234)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def submit_to_github(http: aiohttp.ClientSession, setup_url: str) -> tuple[str, Any]:
    """What the browser does: load the page, post its form to GitHub; (redirect, manifest)."""
    async with http.get(setup_url + "/") as response:
        assert response.status == 200
        [form] = forms_of(await response.text())
    manifest = json.loads(form["fields"]["manifest"])
    async with http.post(form["action"], data=form["fields"], allow_redirects=False) as response:
        assert response.status == 302
        return response.headers["Location"], manifest


async def test_manifest_flow_writes_the_env_file(
    sim: Simulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = tmp_path / ".env"
    env.write_text(EXISTING)
    webhook = "https://ghapp.example.org/api/github/webhooks"
    server = SetupServer(
        SetupOptions(
            env_file=env, webhook_url=webhook, port=0, github_url=sim.api_url, api_url=sim.api_url
        )
    )
    base = await server.start()
    try:
        location, manifest = await submit_to_github(http, base)
        assert manifest["hook_attributes"] == {"url": webhook, "active": True}
        assert manifest["url"] == "https://ghapp.example.org"
        assert manifest["redirect_url"] == f"{base}/callback"
        assert manifest["callback_urls"] == ["https://ghapp.example.org/auth/github/callback"]
        assert manifest["default_permissions"] == load_manifest()["default_permissions"]
        assert manifest["default_events"] == load_manifest()["default_events"]
        assert location.startswith(f"{base}/callback?code=")

        forged = location.split("&state=")[0] + "&state=forged"
        async with http.get(forged) as response:
            assert response.status == 400
        assert env.read_text() == EXISTING

        async with http.get(location) as response:
            assert response.status == 200
            assert "/installations/new" in await response.text()
        result = await asyncio.wait_for(server.wait(), 5)
    finally:
        await server.stop()

    text = env.read_text()
    key_file = tmp_path / f"{result.app['slug']}.private-key.pem"
    assert text.startswith("# my settings\nORCHESTRATOR_TOKEN=keep-me\nAPP_ID=1234\n")
    assert "export LOG_LEVEL=debug\n" in text and "CALLBACK_SECRET='also kept'\n" in text
    assert '# PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\n# old\n' in text
    assert f"PRIVATE_KEY_PATH={key_file}\n" in text
    assert f"WEBHOOK_SECRET={sim.webhook_secret}\n" in text
    assert f"GITHUB_CLIENT_ID={sim.client_id}\n" in text
    assert f"GITHUB_CLIENT_SECRET={sim.client_secret}\n" in text
    # Sign in with GitHub's callback host, from the webhook URL (no --public-url given).
    assert "PUBLIC_URL=https://ghapp.example.org\n" in text
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == sim.private_key_pem
    # What `ghapp serve` will read from it.
    settings = Settings(_env_file=str(env))
    assert settings.app_id == "1234" and settings.webhook_secret == [sim.webhook_secret]
    assert settings.app_private_key() == sim.private_key_pem
    assert settings.github_api_url == sim.api_url
    assert sim.webhook_url == webhook


async def test_an_organisation_and_an_asked_webhook_url(
    sim: Simulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    options = SetupOptions(env_file=tmp_path / ".env", org="acme", port=0, github_url=sim.api_url)
    server = SetupServer(options)
    base = await server.start()
    try:
        async with http.get(base + "/") as response:
            [ask] = forms_of(await response.text())
        assert ask["action"] == "/manifest" and "webhook_url" in ask["fields"]
        async with http.post(base + "/manifest", data={"webhook_url": "ftp://x"}) as response:
            assert response.status == 400
        hook = "https://smee.io/abc"
        async with http.post(base + "/manifest", data={"webhook_url": hook}) as response:
            [form] = forms_of(await response.text())
        assert form["action"].startswith(f"{sim.api_url}/organizations/acme/settings/apps/new?")
        assert f"state={server.state}" in form["action"]
        assert json.loads(form["fields"]["manifest"])["hook_attributes"]["url"] == hook
    finally:
        await server.stop()


async def test_the_command_end_to_end(
    sim: Simulator,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    env = tmp_path / "deploy" / ".env"
    argv = ["setup", "--port", str(port), "--env-file", str(env), "--github-url", sim.api_url]
    argv += ["--webhook-url", "https://hooks.example.net/api/github/webhooks", "--name", "shop"]
    command = asyncio.create_task(asyncio.to_thread(main, argv))
    base = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(10):
        while True:
            try:
                location, manifest = await submit_to_github(http, base)
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    assert manifest["name"] == "shop"
    async with http.get(location) as response:
        assert response.status == 200
    assert await asyncio.wait_for(command, 10) == 0
    out = capsys.readouterr().out
    assert f"Open {base}/ in a browser" in out
    assert "Wrote APP_ID, PRIVATE_KEY_PATH, WEBHOOK_SECRET" in out
    assert "/installations/new" in out and "ghapp deploy-key" in out
    # No --api-url: GitHub Enterprise's /api/v3 under --github-url (the simulator serves it).
    assert f"GITHUB_API_URL={sim.api_url}/api/v3\n" in env.read_text()


async def test_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        argv = ["setup", "--port", str(port), "--env-file", str(tmp_path / ".env")]
        code = await asyncio.to_thread(main, argv)
    assert code == 1
    assert capsys.readouterr().err.startswith(f"ghapp: --port {port}: cannot listen")


# --- the manifest and the env file ------------------------------------------------------------


def test_the_built_in_manifest_is_manifest_app_yml() -> None:
    """Installed without the repository, setup posts the same manifest."""
    from_file = yaml.safe_load(MANIFEST_FILE.read_text(encoding="utf-8"))
    assert load_manifest() == from_file
    assert from_file == BUILTIN


def test_env_file_updates_in_place(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\n# A=commented\nexport B="x\ny"\nC=3\nB=dup\n')
    env.chmod(0o640)
    changed = update_env_file(env, {"A": "2", "B": "with space", "D": "new"}, header="added")
    assert env.read_text() == 'A=2\n# A=commented\nB="with space"\nC=3\n\n# added\nD=new\n'
    assert changed == ["A", "B", "D"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    fresh = tmp_path / "new.env"
    update_env_file(fresh, {"X": "1"})
    assert fresh.read_text() == "X=1\n"
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_writes_do_not_follow_planted_symlinks(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    env = tmp_path / ".env"
    # The old fixed temporary name, and the target itself, planted as symlinks to the victim.
    (tmp_path / "..env.tmp").symlink_to(victim)
    update_env_file(env, {"X": "1"})
    assert victim.read_text() == "untouched\n"
    assert env.read_text() == "X=1\n" and not env.is_symlink()
    key = tmp_path / "app.pem"
    key.symlink_to(victim)
    write_secret_file(key, "secret\n")
    assert victim.read_text() == "untouched\n"
    assert not key.is_symlink() and key.read_text() == "secret\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # No temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["..env.tmp", ".env", "app.pem", "victim"]
