"""Who may do what, through real HTTP on SQLite and PostgreSQL: scoped tokens on every route,
revocation across replicas, the audit trail and its verification (docs/access.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from ghapp.cli.demo import demo_workflows
from ghapp.client import CallbackVerificationError, verify_callback
from ghapp.core.scopes import ADMIN
from ghapp.runner import BackgroundServer
from ghapp.simulator.auth import generate_private_key_pem
from ghapp.simulator.stack import Stack
from ghapp.store import SqlStore
from ghapp.web.app import create_app
from ghapp.work.access import TokenRegistry, issue_token, rotate_token, verify_audit
from ghapp.work.retention import Retention


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None,
    json: Any = None,
) -> tuple[int, Any]:
    """One request with a bearer token: (status, JSON body or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=json, headers=headers) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def make_token(stack: Stack, base: str | None = None, **body: Any) -> str:
    """A token made through the API with the admin token."""
    assert stack.session is not None
    status, made = await call(
        stack.session, "POST", f"{base or stack.base_url}/api/v1/tokens",
        stack.settings.orchestrator_token, body,
    )
    assert status == 201, made
    assert made["token"].startswith("ghapp_") and len(made["token"]) == 49
    assert made["prefix"] == made["token"][:10]
    return str(made["token"])


async def test_a_scoped_token_on_every_route(stack: Stack) -> None:
    assert stack.session is not None
    session, base, admin = stack.session, stack.base_url, stack.settings.orchestrator_token
    ci = await make_token(stack, name="ci", repositories=["acme/shop"],
                          environments=["staging"], scopes=["deploy"])
    staging = {"environment": "staging"}
    status, shop = await call(session, "POST", f"{base}/api/v1/deployments", ci,
                              {"repository": "acme/shop", "inputs": staging})
    assert status == 202, shop
    assert shop["requested_by"] == "ci"
    status, body = await call(session, "POST", f"{base}/api/v1/deployments", ci,
                              {"repository": "acme/api", "inputs": staging})
    assert (status, body["error"]) == (404, "not_found")
    status, body = await call(session, "POST", f"{base}/api/v1/deployments", ci,
                              {"repository": "acme/shop", "inputs": {"environment": "production"}})
    assert (status, body["error"], body["missing_scope"]) == (403, "forbidden", "deploy")
    # Deployments the admin made: acme/api (another repository), acme/shop production.
    _, api = await call(session, "POST", f"{base}/api/v1/deployments", admin,
                        {"repository": "acme/api", "inputs": staging})
    _, prod = await call(session, "POST", f"{base}/api/v1/deployments", admin,
                         {"repository": "acme/shop"})
    assert api["requested_by"] == "orchestrator"
    for deployment in (shop, api, prod):
        await stack.receiver.wait_for(deployment["id"], timeout=30)
    # Every route answers 404 for acme/api, as if it were not there.
    for method, path in (
        ("GET", f"/api/v1/deployments/{api['id']}"),
        ("GET", f"/api/v1/deployments/{api['id']}/events"),
        ("GET", f"/api/v1/deployments/{api['id']}/report"),
        ("POST", f"/api/v1/deployments/{api['id']}/cancel"),
        ("POST", f"/api/v1/deployments/{api['id']}/callback"),
        ("GET", "/api/v1/repos/acme/api/environments"),
        ("GET", "/api/v1/repos/acme/api/environments/staging/releases"),
        ("POST", "/api/v1/repos/acme/api/environments/staging/rollback"),
    ):
        status, body = await call(session, method, base + path, ci)
        assert status == 404, (method, path, body)
        # The admin token sees it (the report exists: acme/api's deploy failed).
        status, _ = await call(session, method, base + path, admin)
        assert status != 404 or path.endswith("rollback"), (method, path)
    status, body = await call(session, "GET", f"{base}/api/v1/deployments/{shop['id']}", ci)
    assert status == 200 and body["requested_by"] == "ci"
    status, page = await call(session, "GET", f"{base}/deployments/{shop['id']}", admin)
    assert status == 200 and '<dd class="requested-by">ci</dd>' in page
    # Lists and statistics leave out what the token may not read.
    _, listed = await call(session, "GET", f"{base}/api/v1/deployments", ci)
    assert [d["id"] for d in listed["deployments"]] == [shop["id"]]
    _, everything = await call(session, "GET", f"{base}/api/v1/deployments", admin)
    assert len(everything["deployments"]) == 3
    _, stats = await call(session, "GET", f"{base}/api/v1/stats", ci)
    assert [(s["repository"], s["environment"]) for s in stats["stats"]] == [
        ("acme/shop", "staging")
    ]
    _, environments = await call(session, "GET", f"{base}/api/v1/repos/acme/shop/environments",
                                 ci)
    assert [e["name"] for e in environments["environments"]] == ["staging"]
    # Admin routes name the scope missing.
    for method, path in (("GET", "/api/v1/tokens"), ("GET", "/api/v1/audit"),
                         ("GET", "/api/v1/deliveries"),
                         ("POST", "/api/v1/repos/acme/shop/deploy-key")):
        status, body = await call(session, method, base + path, ci)
        assert (status, body.get("missing_scope")) == (403, "admin"), path
    # The audit trail: each of those with its actor and outcome.
    _, trail = await call(session, "GET", f"{base}/api/v1/audit?actor=token:ci", admin)
    seen = [(e["action"], e["outcome"]) for e in reversed(trail["entries"])]
    assert seen[:3] == [("deployment.create", "202"), ("deployment.create", "404"),
                        ("deployment.create", "403")]
    assert ("deployment.cancel", "404") in seen and ("rollback.create", "404") in seen
    assert trail["entries"][-1]["target"] == shop["id"]
    assert all(e["client"] == "127.0.0.1" for e in trail["entries"])
    _, made = await call(session, "GET", f"{base}/api/v1/audit?action=token.create", admin)
    assert [(e["actor"], e["target"]) for e in made["entries"]] == [
        ("token:orchestrator", "ci")
    ]
    # Tokens are listed without their values; a name is unique.
    _, listed_tokens = await call(session, "GET", f"{base}/api/v1/tokens", admin)
    assert [t["name"] for t in listed_tokens["tokens"]] == ["ci"]
    assert "token" not in listed_tokens["tokens"][0]
    assert listed_tokens["tokens"][0]["last_used_at"] is not None
    status, _ = await call(session, "POST", f"{base}/api/v1/tokens", admin, {"name": "ci"})
    assert status == 409
    status, body = await call(session, "POST", f"{base}/api/v1/tokens", admin,
                              {"name": "x", "repositories": ["acme/*"], "scopes": ["admin"]})
    assert status == 422 and "admin" in body["message"]


async def test_revoked_on_a_second_replica_within_a_second(database_url: str) -> None:
    stack = await Stack.start(database_url)
    second = BackgroundServer(create_app(stack.settings, retry_base=0.05))
    try:
        other = await second.start()
        assert stack.session is not None
        token = await make_token(stack, name="reader", scopes=["read"])
        path = "/api/v1/deployments"
        for base in (stack.base_url, other):  # both replicas know it (and cache it)
            status, _ = await call(stack.session, "GET", base + path, token)
            assert status == 200
        status, _ = await call(stack.session, "DELETE", f"{stack.base_url}/api/v1/tokens/reader",
                               stack.settings.orchestrator_token)
        assert status == 204
        revoked_at = time.monotonic()
        while True:
            status, _ = await call(stack.session, "GET", other + path, token)
            if status == 401:
                break
            assert time.monotonic() - revoked_at < 1.0, "still accepted after 1 s"
            await asyncio.sleep(0.05)
        status, _ = await call(stack.session, "GET", stack.base_url + path, token)
        assert status == 401
        # An expired token is refused as well; ORCHESTRATOR_TOKEN keeps working.
        status, _ = await call(stack.session, "GET", other + path,
                               stack.settings.orchestrator_token)
        assert status == 200
    finally:
        await second.stop()
        await stack.close()


async def test_twenty_audit_writes_from_two_replicas_keep_one_chain(database_url: str) -> None:
    stack = await Stack.start(database_url)
    second = BackgroundServer(create_app(stack.settings, retry_base=0.05))
    try:
        other = await second.start()
        assert stack.session is not None
        bases = [stack.base_url, other]
        answers = await asyncio.gather(
            *(
                call(stack.session, "POST", f"{bases[n % 2]}/api/v1/tokens",
                     stack.settings.orchestrator_token, {"name": f"t{n}"})
                for n in range(20)
            )
        )
        assert [status for status, _ in answers] == [201] * 20
    finally:
        await second.stop()
        await stack.close()
    store = SqlStore(database_url)
    await store.open()
    try:
        _, head, rows = await store.audit_chain()
        assert [r["id"] for r in rows] == list(range(1, 21))
        assert sorted(r["target"] for r in rows) == sorted(f"t{n}" for n in range(20))
        assert await verify_audit(store) is None
        assert rows[0]["previous_hash"] == "0" * 64 and head == rows[-1]["hash"]
    finally:
        await store.close()


@pytest.fixture
def on_database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """The CLI's settings: this test's database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


async def test_cli_tokens_and_audit_verify_finds_an_edited_and_a_deleted_row(
    on_database: str, cli: Any
) -> None:
    code, out, _ = await cli("tokens", "create", "deployer", "--repos", "acme/*",
                             "--environments", "staging,dev-*", "--scopes", "deploy,read",
                             "--expires", "90d")
    assert code == 0 and out.strip().startswith("ghapp_")
    code, out, _ = await cli("tokens", "create", "second")
    assert code == 0
    code, out, err = await cli("tokens", "create", "bad", "--scopes", "admin", "--repos", "a/*")
    assert code == 2 and "admin" in err
    code, out, _ = await cli("tokens", "list")
    assert code == 0 and out.count("\n") == 2
    deployer, second = out.splitlines()
    assert deployer.startswith("deployer\tghapp_") and "repos=acme/*" in deployer
    assert "expires=never" not in deployer and second.endswith("expires=never")
    code, out, _ = await cli("tokens", "revoke", "second")
    assert code == 0
    code, out, _ = await cli("audit")
    assert code == 0 and out.count("\n") == 4
    assert '"actor": "cli:' in out and '"action": "token.revoke"' in out
    code, out, _ = await cli("audit", "--verify")
    assert (code, out.strip()) == (0, "audit chain holds")
    store = SqlStore(on_database)
    await store.open()
    try:
        async with store.begin() as conn:
            await conn.execute(text("UPDATE audit SET outcome = '200' WHERE id = 2"))
        code, out, _ = await cli("audit", "--verify")
        assert code == 1 and "row 2" in out and "edited" in out
        async with store.begin() as conn:
            await conn.execute(text("UPDATE audit SET outcome = '201' WHERE id = 2"))
        code, _, _ = await cli("audit", "--verify")
        assert code == 0
        async with store.begin() as conn:
            await conn.execute(text("DELETE FROM audit WHERE id = 2"))
        code, out, _ = await cli("audit", "--verify")
        assert code == 1 and "row 3" in out and "removed" in out
    finally:
        await store.close()


async def test_app_key_rotation_falls_back_when_github_refuses_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = generate_private_key_pem(), generate_private_key_pem()
    (tmp_path / "old.pem").write_text(old)
    (tmp_path / "new.pem").write_text(new)
    stack = await Stack.start(
        f"sqlite:///{tmp_path / 'ghapp.db'}",
        configure_simulator=lambda sim: sim.add_app_key(new),
        private_key=None,
        private_key_path=f"{tmp_path / 'old.pem'}:{tmp_path / 'new.pem'}",
    )
    try:
        stack.sim.private_key_pem = old
        stack.sim.remove_app_key(stack.sim.private_key_pem)  # the simulator's own first key
        stack.sim.add_app_key(old)
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
        status, first = await stack.deploy("acme/shop")
        assert status == 202, first
        # The old key is deleted in the App's settings: GitHub refuses what it signs.
        stack.sim.remove_app_key(old)
        assert stack.session is not None
        jwt_headers = {"Authorization": f"Bearer {stack.sim.make_jwt()}"}
        async with stack.session.get(f"{stack.sim.api_url}/app", headers=jwt_headers) as answer:
            assert answer.status == 401
        await stack.stop_ghapp()  # a restart: no installation token cached any more
        await stack.start_ghapp()
        with caplog.at_level("WARNING", logger="ghapp.github"):
            status, second = await stack.deploy("acme/shop")
        assert status == 202, second
        callback = await stack.receiver.wait_for(second["id"], timeout=30)
        assert callback.deployment["verdict"]["status"] == "success"
        assert any("refused the App's key 1 of 2" in r.getMessage() for r in caplog.records)
    finally:
        await stack.close()


async def test_callback_secret_rotation_a_receiver_of_either_secret_accepts_every_callback(
    tmp_path: Path,
) -> None:
    old, new = "old-callback-secret-0123456", "new-callback-secret-0123456"
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", callback_secret=old)
    try:
        for repository, workflow in demo_workflows().items():
            stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)

        async def callback_of_a_deploy() -> tuple[bytes, dict[str, str]]:
            _, body = await stack.deploy("acme/shop")
            received = await stack.receiver.wait_for(body["id"], timeout=30)
            return received.body, dict(received.headers)

        async def restart(**settings: Any) -> None:
            await stack.stop_ghapp()
            stack.settings = stack.settings.model_copy(update=settings)
            await stack.start_ghapp()

        # Before: the receiver knows the old secret only.
        body, headers = await callback_of_a_deploy()
        assert verify_callback(body, headers, old).state == "completed"
        # During: both signatures; a receiver still on the old secret, or already on the
        # new one, accepts the callback.
        await restart(callback_secret=new, callback_secret_previous=old)
        body, headers = await callback_of_a_deploy()
        for secret in (old, new):
            assert verify_callback(body, headers, secret).state == "completed"
        # After: the previous secret is dropped; the receiver knows the new one only.
        await restart(callback_secret_previous=None)
        body, headers = await callback_of_a_deploy()
        assert verify_callback(body, headers, new).state == "completed"
        with pytest.raises(CallbackVerificationError):
            verify_callback(body, headers, old)
    finally:
        await stack.close()


async def test_pruning_keeps_the_chain_verifiable_from_its_new_first_row(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await store.open()
    try:
        for n in range(5):
            await store.append_audit(
                {"actor": "token:ci", "action": "deployment.create", "target": f"dep_{n}",
                 "outcome": "202"},
                now=1000.0 + n,
            )
        removed = await Retention(store, delivery_log_days=0, audit_days=1).prune(
            now=1003.5 + 86400
        )
        assert removed["audit"] == 4
        _, _, rows = await store.audit_chain()
        assert [(r["id"], r["action"]) for r in rows] == [(5, "deployment.create"),
                                                           (6, "audit.pruned")]
        assert await verify_audit(store) is None
        # The new first row removed: found too.
        async with store.begin() as conn:
            await conn.execute(text("DELETE FROM audit WHERE id = 5"))
        broken = await verify_audit(store)
        assert broken is not None and broken.row_id == 6
    finally:
        await store.close()


async def test_the_operator_page_signs_in_admin_tokens_only_and_audits_it(stack: Stack) -> None:
    assert stack.session is not None
    reader = await make_token(stack, name="reader", scopes=["read"])
    admin = await make_token(stack, name="ops", scopes=["admin"])
    async with aiohttp.ClientSession() as browser:
        async with browser.post(f"{stack.base_url}/login", data={"token": reader},
                                allow_redirects=False) as answer:
            assert answer.status == 401
        async with browser.post(f"{stack.base_url}/login", data={"token": admin},
                                allow_redirects=False) as answer:
            assert answer.status == 303
        async with browser.get(f"{stack.base_url}/") as page:
            assert page.status == 200
    _, trail = await call(stack.session, "GET", f"{stack.base_url}/api/v1/audit?action=signin",
                          stack.settings.orchestrator_token)
    assert [e["actor"] for e in trail["entries"]] == ["token:ops"]
    _, failed = await call(stack.session, "GET",
                           f"{stack.base_url}/api/v1/audit?action=signin.failed",
                           stack.settings.orchestrator_token)
    assert [e["actor"] for e in failed["entries"]] == ["token:reader"]


async def test_a_rotated_token_keeps_its_old_value_for_the_overlap(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await store.open()
    try:
        issued = await issue_token(store, ADMIN, name="ci", repositories=["acme/*"],
                                   environments=["*"], scope_names=["deploy"],
                                   expires_in_days=None, created_by="cli:test")
        rotated = await rotate_token(store, "ci", overlap_seconds=60)
        assert rotated is not None and rotated.token != issued.token
        registry = TokenRegistry(store, orchestrator_token=None)
        now = time.time()
        for value in (issued.token, rotated.token):
            grant = await registry.grant(value, now=now)
            assert grant is not None and grant.name == "ci"
        registry.forget()
        # Past the overlap only the new value works; a made-up one never did.
        assert await registry.grant(issued.token, now=now + 61) is None
        assert await registry.grant(rotated.token, now=now + 61) is not None
        assert await registry.grant("ghapp_" + "x" * 43, now=now) is None
        # An expired token is refused.
        soon = await issue_token(store, ADMIN, name="soon", repositories=["*"],
                                 environments=["*"], scope_names=["read"],
                                 expires_in_days=1, created_by="cli:test")
        assert await registry.grant(soon.token, now=now) is not None
        assert await registry.grant(soon.token, now=now + 86401) is None
    finally:
        await store.close()
