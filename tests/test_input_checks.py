"""Malformed values on every route of a real `ghapp serve` process: a clear 4xx, never a 500.

Run on SQLite and on PostgreSQL (which refuses NUL characters and numbers past 64 bits, where
SQLite shrugs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.web.http import callback_allowed

BIG = 2**70


@pytest.fixture
async def served(stack: Stack, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack, with ghapp as a real `ghapp serve` process on the same database."""
    await stack.stop_ghapp()
    server = ProcessServer(stack.settings, str(tmp_path / "serve.log"))
    try:
        stack.base_url = await server.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        yield stack
    finally:
        await server.stop()


class Client:
    """Raw-ish requests to the server, each answer's status collected with what was sent."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.session = session
        self.answers: list[tuple[int, str]] = []

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> int:
        sent = dict(headers or {})
        if auth:
            sent.update(self.stack.auth)
        # Sent as written: no normalising of `..`, no re-quoting.
        url = URL(self.stack.base_url + path, encoded=True)
        async with self.session.request(
            method, url, data=body, headers=sent, allow_redirects=False
        ) as response:
            await response.read()
            self.answers.append((response.status, f"{method} {path} {body!r:.200}"))
            return response.status

    async def deploy(self, payload: Any, **kwargs: Any) -> int:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.send(
            "POST",
            "/api/v1/deployments",
            body=raw,
            headers={"Content-Type": "application/json", **kwargs.pop("headers", {})},
            **kwargs,
        )

    async def webhook(self, event: str, payload: Any, **headers: str) -> int:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        secret = self.stack.settings.webhook_secret[0].encode()
        signature = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        return await self.send(
            "POST",
            self.stack.settings.webhook_path,
            body=raw,
            headers={
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
                **headers,
            },
            auth=False,
        )


def bad_deployment_bodies(callback: str) -> list[Any]:
    """Every kind of malformed POST /api/v1/deployments body (each answered 400 or 422)."""
    origin = callback.rsplit("/", 1)[0]
    host_port = origin.removeprefix("http://")
    host, _, port = host_port.partition(":")
    good = {"repository": "acme/shop"}
    bodies: list[Any] = [
        [],
        "acme/shop",
        1,
        None,
        {},
        {**good, "unknown": 1},
    ]
    for repository in (
        "../..",
        "acme/..",
        "./shop",
        "acme/.",
        "..",
        "acme/shop/x",
        "acme",
        "",
        "/",
        "acme/shop\x00",
        "äcme/shop",
        "acme/shop?x=1",
        "acme/sh op",
        "a" * 101 + "/b",
        5,
        None,
        ["acme/shop"],
    ):
        bodies.append({"repository": repository})
    for workflow in ("../deploy.yml", "deploy", "", "9" * 30, BIG, "d\x00.yml", None):
        bodies.append({**good, "workflow": workflow})
    for ref in ("", " ", "a b", "main\x00", "main\n", "x" * 300, 5, []):
        bodies.append({**good, "ref": ref})
    for inputs in (
        [],
        "x",
        {"a": {"b": 1}},
        {"a": [1]},
        {"a": None},
        {f"k{n}": "v" for n in range(26)},
        {"a": "x" * 70_000},
        {"a": BIG},
        {"a": -2.4e307},
        {"": "x"},
        {"k" * 101: "x"},
    ):
        bodies.append({**good, "inputs": inputs})
    for url in (
        "ftp://" + host_port + "/cb",
        "javascript:alert(1)",
        "//" + host_port + "/cb",
        f"http://user:pw@{host_port}/cb",
        f"http://user@{host_port}/cb",
        f"http://{host}:99999/cb",
        f"http://{host}:abc/cb",
        f"http://{host}:0/cb",
        f"http://{host}:-1/cb",
        "http://[::1",
        f"http://{host_port}/c b",
        f"http://{host_port}/cb\x00",
        f"http://{host_port}/cb\r\nX: y",
        f"http://{host}:{int(port) + 1}/cb",
        f"https://{host_port}/cb",
        "http://elsewhere.example/cb",
        f"http://{host_port}/" + "x" * 3000,
        "",
        5,
    ):
        bodies.append({**good, "callback_url": url})
    return bodies


async def test_no_route_answers_500_to_malformed_input(served: Stack) -> None:
    stack = served
    callback = stack.settings.orchestrator_callback_url or ""
    async with aiohttp.ClientSession() as session:
        client = Client(stack, session)
        # POST /api/v1/deployments: bodies that break the schema (422) or are not JSON (400).
        for body in bad_deployment_bodies(callback):
            status = await client.deploy(body)
            assert status == 422, body
        for raw in (
            b"{",
            b"\xff\xfe",
            b'{"repository": "acme/shop", "inputs": {"a": 1e400}}',
            b'{"repository": NaN}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"repository": "\\ud800/x"}',
        ):
            assert await client.deploy(raw) in (400, 422), raw
        for key in ("k" * 201, "a\tb"):
            status = await client.deploy(
                {"repository": "acme/shop"}, headers={"Idempotency-Key": key}
            )
            assert status == 422, key
        # The list's query parameters.
        for query in (
            "limit=0",
            "limit=-1",
            "limit=201",
            "limit=abc",
            "limit=1e3",
            "limit=" + "9" * 30,
            "limit=",
            "state=finished",
            "state=%00",
            "repository=..%2F..",
            "repository=%00",
            "repository=" + "a" * 300,
        ):
            assert await client.send("GET", f"/api/v1/deployments?{query}") == 422, query
        # Ids that cannot be ghapp's: 404 without a lookup.
        for deployment_id in ("%00", "x" * 5000, "..", "%2e%2e", "dep_%FF", "a%20b"):
            for method, suffix in (
                ("GET", ""),
                ("POST", "/cancel"),
                ("POST", "/callback"),
                ("GET", "/report"),
                ("GET", "/events"),
            ):
                path = f"/api/v1/deployments/{deployment_id}{suffix}"
                assert await client.send(method, path) == 404, path
        # The deploy-key route's owner and name.
        for owner, repo in (
            ("..", "x"),
            ("acme", ".."),
            (".", "x"),
            ("acme", "."),
            ("evil", "good%3Fx=1"),
            ("evil", "good%23x"),
            ("%00", "x"),
            ("a" * 101, "x"),
            ("acme", "sh%20op"),
        ):
            path = f"/api/v1/repos/{owner}/{repo}/deploy-key"
            assert await client.send("POST", path) == 422, path
        # The delivery log's routes.
        for query in ("limit=0", "limit=x", "limit=1001", "signature=forged", "event=%00"):
            assert await client.send("GET", f"/api/v1/deliveries?{query}") == 422, query
        for key in ("%00", "x" * 5000):
            assert await client.send("GET", f"/api/v1/deliveries/{key}") == 404
        # Signed webhooks with impossible types or values: 400. The run is one of ghapp's, so
        # every field the handlers read is checked.
        status, deployment = await stack.deploy("acme/shop")
        assert status == 202 and deployment["run"], deployment
        run = {"id": deployment["run"]["id"], "event": "workflow_dispatch", "status": "completed"}
        for event, payload in (
            ("workflow_run", {"action": "completed", "workflow_run": "x"}),
            ("workflow_run", {"action": "completed", "workflow_run": {**run, "id": BIG}}),
            ("workflow_run", {"action": "completed", "workflow_run": {**run, "id": -1}}),
            ("workflow_run", {"action": "completed", "workflow_run": {**run, "id": "5"}}),
            ("workflow_run", {"action": "completed", "workflow_run": {**run, "id": 5.5}}),
            ("workflow_run", {"action": "completed", "workflow_run": {**run, "id": True}}),
            ("workflow_run", {"workflow_run": {**run, "run_attempt": "x"}}),
            ("workflow_run", {"workflow_run": {**run, "run_attempt": BIG}}),
            ("workflow_run", {"workflow_run": {**run, "conclusion": 5}}),
            ("workflow_run", {"workflow_run": {**run, "html_url": ["x"]}}),
            ("workflow_run", {"workflow_run": {**run, "display_title": {"x": 1}}}),
            ("workflow_run", {"action": 5, "workflow_run": run}),
            ("workflow_run", []),
            ("deployment_status", {"workflow_run": {"id": BIG}, "deployment_status": {}}),
            ("deployment_status", {"workflow_run": {"id": 5}, "deployment_status": "x"}),
            ("deployment_status", {"deployment_status": {"environment_url": 5}}),
            ("workflow_job", {"installation": {"id": "x"}}),
            # A job of a run no deployment watches: its installation id is checked all the same.
            ("workflow_job", {"workflow_job": {"run_id": 5}, "installation": {"id": "abc"}}),
            ("installation", {"installation": {"id": BIG}, "repository": {"full_name": "a/b"}}),
            ("installation_repositories", {"repository": "x"}),
            ("ping", [1]),
            ("ping", b"not json"),
        ):
            assert await client.webhook(event, payload) == 400, (event, payload)
        for extra in ({"installation": {"id": BIG}}, {"repository": {"full_name": 5}}):
            assert await client.webhook("workflow_run", {"workflow_run": run, **extra}) == 400
        # Beside a run no deployment watches, those fields are not read: 200 `not_ours`.
        foreign = {**run, "id": 5, "run_attempt": "x", "conclusion": 5}
        assert await client.webhook("workflow_run", {"workflow_run": foreign}) == 200
        assert await client.webhook("ping", {"zen": "x"}, **{"X-GitHub-Delivery": "d" * 200}) == 400
        # The operator page tolerates odd queries and ids (it shows what it can).
        assert await client.send("GET", "/?limit=abc&state=%00&repository=%00&refresh=1e9") == 200
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for path in ("/ui/deployments/%00/resend", "/ui/deliveries/%00/redeliver"):
            status = await client.send(
                "POST", path, body=b"back=%00&received_at=nan&csrf=\xff", headers=form
            )
            assert status == 303, path
        for token in (b"token=%00", b"token=\xff\xfe", b"x" * 16_000):
            status = await client.send("POST", "/login", body=token, headers=form, auth=False)
            assert status == 401, token
    errors = [answer for answer in client.answers if answer[0] >= 500]
    assert errors == [], errors


def test_callback_urls_follow_the_default_origin_or_the_allowed_hosts() -> None:
    default = "https://orch.example/cb"
    assert callback_allowed("https://orch.example/other", [], default)
    assert callback_allowed("https://orch.example:443/cb", [], default)
    assert not callback_allowed("https://orch.example:8443/cb", [], default)
    assert not callback_allowed("http://orch.example/cb", [], default)
    assert not callback_allowed("https://other.example/cb", [], default)
    assert not callback_allowed("https://orch.example/cb", [], None)
    assert callback_allowed("http://orch.example/cb", [], "http://orch.example:80/x")
    # CALLBACK_ALLOWED_HOSTS keeps its meaning: a host, any port; host:port, that port.
    assert callback_allowed("http://orch.example:9000/cb", ["orch.example"], default)
    assert callback_allowed("https://b.example:8443/", ["a.example", "b.example:8443"], None)
    assert not callback_allowed("https://b.example/", ["b.example:8443"], None)
    assert not callback_allowed("https://orch.example:x/cb", ["orch.example"], default)
