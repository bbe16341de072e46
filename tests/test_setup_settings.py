"""`ghapp setup` leaves a server that starts: ORCHESTRATOR_TOKEN and CALLBACK_SECRET generated
once, the callback URL asked for or given, the env file 0600 (said when it changed)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

# The manifest flow as a browser drives it, from the set-up flow's own tests.
from test_setup_flow import free_port, submit_to_github

from ghapp.cli.envfile import read_env_file
from ghapp.cli.main import main
from ghapp.cli.setup_settings import ask_callback_url, server_values
from ghapp.config import Settings
from ghapp.simulator import Simulator

HEX64 = set("0123456789abcdef")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(app_id=1234)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


async def run_setup(
    sim: Simulator, env_file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> str:
    """`ghapp setup` through the manifest flow, as a browser drives it; its output."""
    port = free_port()
    argv = ["setup", "--port", str(port), "--env-file", str(env_file)]
    argv += ["--github-url", sim.api_url, "--api-url", sim.api_url]
    argv += ["--webhook-url", "https://ghapp.example.net/api/github/webhooks", *extra]
    capsys.readouterr()
    command = asyncio.create_task(asyncio.to_thread(main, argv))
    async with aiohttp.ClientSession() as http, asyncio.timeout(15):
        while True:
            try:
                location, _ = await submit_to_github(http, f"http://127.0.0.1:{port}")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        async with http.get(location) as response:
            assert response.status == 200
    assert await asyncio.wait_for(command, 15) == 0
    out: str = capsys.readouterr().out
    return out


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_env_file_is_ready_to_serve(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / ".env"
    callback = "https://orch.example.net/ghapp/callbacks"
    out = await run_setup(sim, env, capsys, "--callback-url", callback)
    values = read_env_file(env)
    for name in ("ORCHESTRATOR_TOKEN", "CALLBACK_SECRET"):
        assert len(values[name]) == 64 and set(values[name]) <= HEX64
    assert values["ORCHESTRATOR_TOKEN"] != values["CALLBACK_SECRET"]
    assert values["ORCHESTRATOR_CALLBACK_URL"] == callback
    assert mode_of(env) == 0o600
    assert "Generated ORCHESTRATOR_TOKEN (the bearer token" in out
    assert "and CALLBACK_SECRET (the key" in out and "give both to the orchestrator" in out
    assert "mode from" not in out  # a new file: created 0600, nothing changed
    # What the client id and secret are for, on screen and in the file.
    assert "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are the App's OAuth client" in out
    assert "PAGE_AUTH=github" in out
    text = env.read_text()
    note = text.index("# GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET: the App's OAuth client")
    assert note < text.index("GITHUB_CLIENT_ID=")
    next_steps = out.split("Next steps:", 1)[1]
    assert f"ORCHESTRATOR_CALLBACK_URL={callback}" in next_steps
    assert "ghapp check OWNER/REPO" in next_steps
    # `ghapp serve` would start on it: every setting it requires is there and valid.
    settings = Settings(_env_file=str(env))
    settings.require_for_serve()
    assert settings.orchestrator_callback_url == callback


async def test_an_existing_0644_env_file(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / ".env"
    env.write_text("# mine\nORCHESTRATOR_TOKEN=kept-as-it-was-0b5e7c41\nLOG_LEVEL=debug\n")
    env.chmod(0o644)
    out = await run_setup(sim, env, capsys)
    assert mode_of(env) == 0o600
    assert f"Changed {env}'s mode from 0644 to 0600" in out
    values = read_env_file(env)
    assert values["ORCHESTRATOR_TOKEN"] == "kept-as-it-was-0b5e7c41"
    assert values["LOG_LEVEL"] == "debug" and env.read_text().startswith("# mine\n")
    assert "Generated CALLBACK_SECRET (" in out and "give it to the orchestrator" in out
    assert "ORCHESTRATOR_TOKEN (" not in out
    secret = values["CALLBACK_SECRET"]
    # Not on a terminal and not given: not asked; the next steps say it must be set.
    assert "ORCHESTRATOR_CALLBACK_URL" not in values
    assert f"Set ORCHESTRATOR_CALLBACK_URL in {env}" in out.split("Next steps:", 1)[1]

    # Again (a new App, say): the secrets stay what they are, the mode is already right.
    out = await run_setup(sim, env, capsys, "--callback-url", "http://orch.internal:8080/cb")
    again = read_env_file(env)
    assert again["CALLBACK_SECRET"] == secret
    assert again["ORCHESTRATOR_TOKEN"] == "kept-as-it-was-0b5e7c41"
    assert again["ORCHESTRATOR_CALLBACK_URL"] == "http://orch.internal:8080/cb"
    assert "Generated" not in out and "mode from" not in out
    assert env.read_text().count("CALLBACK_SECRET=") == 1


def test_secrets_set_elsewhere_are_not_generated() -> None:
    values, generated, warnings = server_values(
        {"ORCHESTRATOR_TOKEN": "short"}, {"CALLBACK_SECRET": "c" * 32}, None
    )
    assert values == {} and generated == []
    assert warnings == [
        "ORCHESTRATOR_TOKEN (kept) has 5 characters: ghapp serve needs at least 16 "
        "(e.g. openssl rand -hex 32)"
    ]


def test_the_callback_url_is_asked_until_it_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["orch.internal/cb", "ftp://orch/", " https://orch.internal/cb/ "])
    assert ask_callback_url(lambda _prompt: next(answers)) == "https://orch.internal/cb"
    assert capsys.readouterr().out.count("is not an http(s) URL") == 2
    assert ask_callback_url(lambda _prompt: "") is None

    def closed(_prompt: str) -> str:
        raise EOFError

    assert ask_callback_url(closed) is None


async def test_a_malformed_callback_url_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / ".env"
    argv = ["setup", "--env-file", str(env), "--callback-url", "orch:8080"]
    assert await asyncio.to_thread(main, argv) == 2
    assert capsys.readouterr().err == "ghapp: --callback-url: 'orch:8080' is not an http(s) URL\n"
    assert not env.exists()
