"""Deploy keys: the private half lands in the DEPLOY_SSH_KEY secret, the public half comes back."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from nacl.public import PrivateKey

from ghapp.cli.main import main
from ghapp.github.deploykeys import fingerprint_sha256
from ghapp.simulator.stack import Stack


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    stack = await Stack.start(database_url)
    stack.sim.add_repository("acme/shop", default_branch="main")
    yield stack
    await stack.close()


async def create_key(stack: Stack, repository: str, **headers: str) -> tuple[int, Any, str]:
    """POST the deploy-key endpoint; (status, JSON, raw text)."""
    assert stack.session is not None
    url = f"{stack.base_url}/api/v1/repos/{repository}/deploy-key"
    async with stack.session.post(url, headers=headers or stack.auth) as response:
        text = await response.text()
        return response.status, await response.json(), text


def stored_private_key(stack: Stack, repository: str) -> bytes:
    """The secret as GitHub decrypted it (the simulator keeps the plain value)."""
    return stack.sim.repos[repository].secrets["DEPLOY_SSH_KEY"]


def public_line_of(private_pem: bytes) -> str:
    """`ssh-ed25519 AAAA...` of a private OpenSSH key."""
    key = serialization.load_ssh_private_key(private_pem, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


async def test_the_secret_is_the_private_half_of_the_returned_public_key(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, text = await create_key(stack, "acme/shop")
    assert status == 201
    assert set(body) == {"secret_name", "public_key", "fingerprint"}
    assert body["secret_name"] == "DEPLOY_SSH_KEY"
    kind, blob, comment = body["public_key"].split(" ")
    assert kind == "ssh-ed25519" and comment == "ghapp-deploy@acme/shop"
    assert body["fingerprint"] == fingerprint_sha256(body["public_key"])
    assert body["fingerprint"].startswith("SHA256:") and not body["fingerprint"].endswith("=")

    private = stored_private_key(stack, "acme/shop")
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public_line_of(private) == f"{kind} {blob}"
    # The private key went to GitHub only: not in the answer, not in any log line.
    assert "PRIVATE KEY" not in text
    assert b"PRIVATE KEY" not in caplog.text.encode()
    private_body = b"".join(private.splitlines()[1:-1]).decode()
    assert private_body[:40] not in text and private_body[:40] not in caplog.text


async def test_a_second_call_replaces_the_key(stack: Stack) -> None:
    _, first, _ = await create_key(stack, "acme/shop")
    status, second, _ = await create_key(stack, "acme/shop")
    assert status == 201 and second["public_key"] != first["public_key"]
    public = second["public_key"].rsplit(" ", 1)[0]
    assert public_line_of(stored_private_key(stack, "acme/shop")) == public


async def test_refusals(stack: Stack) -> None:
    status, body, _ = await create_key(stack, "acme/shop", Authorization="Bearer wrong")
    assert status == 401
    status, body, _ = await create_key(stack, "other/repo")
    assert status == 404 and body["error"] == "not_installed"
    assert "not installed on other/repo" in body["message"]
    stack.sim.faults.server_errors = 100
    assert stack.session is not None
    url = f"{stack.base_url}/api/v1/repos/acme/shop/deploy-key"
    async with stack.session.post(url, headers=stack.auth) as response:
        assert response.status == 503 and response.headers["Retry-After"]
        assert (await response.json())["error"] == "github_unavailable"
    assert "DEPLOY_SSH_KEY" not in stack.sim.repos["acme/shop"].secrets


async def fake_github_without_secrets_permission() -> tuple[web.AppRunner, str]:
    """A GitHub that answers the PUT of a secret as it does without `secrets: write`."""
    sealing_key = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()

    async def installation(_r: web.Request) -> web.Response:
        return web.json_response({"id": 7})

    async def token(_r: web.Request) -> web.Response:
        return web.json_response(
            {"token": "ghs_fake", "expires_at": "2099-01-01T00:00:00Z"}, status=201
        )

    async def public_key(_r: web.Request) -> web.Response:
        return web.json_response({"key_id": "568250167242549743", "key": sealing_key})

    async def put_secret(_r: web.Request) -> web.Response:
        message = {
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/actions/secrets",
        }
        return web.json_response(message, status=403)

    app = web.Application()
    app.router.add_get("/repos/{o}/{r}/installation", installation)
    app.router.add_post("/app/installations/7/access_tokens", token)
    app.router.add_get("/repos/{o}/{r}/actions/secrets/public-key", public_key)
    app.router.add_put("/repos/{o}/{r}/actions/secrets/DEPLOY_SSH_KEY", put_secret)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_no_secrets_permission_gives_githubs_message(database_url: str) -> None:
    runner, url = await fake_github_without_secrets_permission()
    stack = await Stack.start(database_url, github_api_url=url)
    try:
        status, body, _ = await create_key(stack, "acme/shop")
        assert status == 502 and body["error"] == "github_refused"
        assert body["github_status"] == 403
        assert "Resource not accessible by integration" in body["message"]
    finally:
        await stack.close()
        await runner.cleanup()


async def test_deploy_key_command(
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_ID", str(stack.sim.app_id))
    monkeypatch.setenv("PRIVATE_KEY", stack.sim.private_key_pem)
    monkeypatch.setenv("GITHUB_API_URL", stack.sim.api_url)
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["deploy-key", "acme/shop"])
    out = capsys.readouterr().out
    assert code == 0
    assert "~/.ssh/authorized_keys" in out and "DEPLOY_SSH_KEY" in out
    [line] = [x for x in out.splitlines() if x.startswith("ssh-ed25519 ")]
    assert line.endswith(" ghapp-deploy@acme/shop")
    assert f"Fingerprint: {fingerprint_sha256(line)}" in out
    assert public_line_of(stored_private_key(stack, "acme/shop")) == line.rsplit(" ", 1)[0]
    assert "PRIVATE KEY" not in out

    code = await asyncio.to_thread(main, ["deploy-key", "other/repo"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("ghapp: the App is not installed on other/repo")
    code = await asyncio.to_thread(main, ["deploy-key", "no-slash"])
    err = capsys.readouterr().err
    assert code == 2 and "owner/name" in err
