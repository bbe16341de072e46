"""Sign in with GitHub on the operator page, over real HTTP against the simulator: a reader team
member reads, a non-member is refused with the teams named, a forged state and a replayed code are
refused, a member removed from the team or whose token GitHub refuses loses access at the recheck.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from test_operator_page import _browser_missing, _chrome

from ghapp.core import signin
from ghapp.simulator import Simulator
from ghapp.simulator.stack import Stack, free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLIENT_ID = "Iv23liabcdef0123456789"
CLIENT_SECRET = "s3cr3t-client-secret-for-tests"


def _configure(sim: Simulator) -> None:
    sim.client_id, sim.client_secret = CLIENT_ID, CLIENT_SECRET
    sim.world.client_id = CLIENT_ID
    sim.oauth.login = "mona"
    sim.oauth.add_member("acme/dev", "mona")
    sim.oauth.add_member("acme/ops", "hubot")


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    port = free_port()
    started = await Stack.start(
        database_url, port=port, configure_simulator=_configure, page_auth="github",
        page_teams="acme/dev", page_admin_teams="acme/ops",
        public_url=f"http://127.0.0.1:{port}", github_client_id=CLIENT_ID,
        github_client_secret=CLIENT_SECRET,
    )
    yield started
    await started.close()


def _browser() -> aiohttp.ClientSession:
    # unsafe: keep cookies of an IP-address host (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _sign_in(http: aiohttp.ClientSession, stack: Stack) -> tuple[int, str]:
    """Start at ghapp, press Authorize on GitHub's page, follow the redirects back."""
    async with http.get(f"{stack.base_url}/auth/github") as page:
        assert page.status == 200
        authorize = str(page.url)
    assert authorize.startswith(f"{stack.sim.api_url}/login/oauth/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{stack.base_url}/auth/github/callback"]
    async with http.post(authorize) as back:
        return back.status, await back.text()


async def test_a_reader_team_member_signs_in_and_reads(stack: Stack) -> None:
    async with _browser() as http:
        status, text = await _sign_in(http, stack)
        assert status == 200
        assert "Sign in with GitHub" not in text
        async with http.get(f"{stack.base_url}/") as page:
            assert page.status == 200
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        # The person's token stays server-side: the cookies hold none of it.
        cookies = " ".join(cookie.value for cookie in http.cookie_jar)
        assert stack.sim.oauth.tokens
        assert not any(token in cookies for token in stack.sim.oauth.tokens)
        # A reader may not act.
        assert csrf is not None
        url = f"{stack.base_url}/ui/deployments/nope/resend"
        async with http.post(url, data={"csrf": csrf.group(1)}) as action:
            assert action.status == 403
            assert "acme/ops" in await action.text()


async def test_an_admin_team_member_may_act(stack: Stack) -> None:
    stack.sim.oauth.login = "hubot"
    async with _browser() as http:
        assert (await _sign_in(http, stack))[0] == 200
        async with http.get(f"{stack.base_url}/") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert csrf is not None
        url = f"{stack.base_url}/ui/deployments/nope/resend"
        async with http.post(url, data={"csrf": csrf.group(1)}) as action:
            assert action.status != 403


async def test_signing_out_ends_the_session_and_revokes_the_github_token(stack: Stack) -> None:
    async with _browser() as http:
        assert (await _sign_in(http, stack))[0] == 200
        async with http.get(f"{stack.base_url}/") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert csrf is not None and len(stack.sim.oauth.tokens) == 1
        async with http.post(f"{stack.base_url}/logout", data={"csrf": csrf.group(1)}) as out:
            assert "Sign in with GitHub" in await out.text()
        assert stack.sim.oauth.tokens == {}
        _, signouts = await stack.get("/api/v1/audit?action=signout&actor=github:mona")
        assert signouts["entries"]


async def test_the_token_form_is_gone_with_page_auth_github(stack: Stack) -> None:
    async with _browser() as http:
        token = stack.settings.orchestrator_token or ""
        async with http.post(f"{stack.base_url}/login", data={"token": token}) as answer:
            assert answer.status == 404
            assert "Sign in with GitHub" in await answer.text()
        async with http.get(f"{stack.base_url}/") as page:
            assert 'id="token"' not in await page.text()


async def test_a_non_member_is_refused_with_the_teams_named(stack: Stack) -> None:
    stack.sim.oauth.login = "stranger"
    async with _browser() as http:
        status, text = await _sign_in(http, stack)
        assert status == 403
        assert "stranger" in text and "acme/dev" in text and "acme/ops" in text
        async with http.get(f"{stack.base_url}/") as page:
            assert "Sign in with GitHub" in await page.text()


async def test_a_forged_state_and_a_replayed_code_are_refused(stack: Stack) -> None:
    async with _browser() as http:
        async with http.get(f"{stack.base_url}/auth/github", allow_redirects=False) as start:
            authorize = start.headers["Location"]
        async with http.post(authorize, allow_redirects=False) as approved:
            callback = urlsplit(approved.headers["Location"])
        code = parse_qs(callback.query)["code"][0]
        forged = f"{stack.base_url}/auth/github/callback?code={code}&state=forged"
        async with http.get(forged, allow_redirects=False) as refused:
            assert refused.status == 400
            assert "state" in await refused.text()
        # Without the flow cookie (another browser), the right state is refused too.
        async with _browser() as other:
            real = f"{stack.base_url}/auth/github/callback?{callback.query}"
            async with other.get(real, allow_redirects=False) as refused:
                assert refused.status == 400
        # The code was presented once (and refused for the state, never exchanged): now the
        # real callback works, and replaying it is refused by GitHub.
        real = f"{stack.base_url}/auth/github/callback?{callback.query}"
        async with http.get(real, allow_redirects=False) as signed:
            assert signed.status == 303
    async with _browser() as replay:
        # Same state and code in a fresh sign-in flow of a second browser: the code is used up.
        async with replay.get(f"{stack.base_url}/auth/github", allow_redirects=False) as start:
            state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
        again = f"{stack.base_url}/auth/github/callback?code={code}&state={state}"
        async with replay.get(again, allow_redirects=False) as refused:
            assert refused.status == 400
            assert "bad_verification_code" in await refused.text()


async def test_removed_from_the_team_or_token_refused_ends_the_session(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _browser() as http:
        assert (await _sign_in(http, stack))[0] == 200
        monkeypatch.setattr(signin, "RECHECK_SECONDS", 0)
        async with http.get(f"{stack.base_url}/") as page:
            assert "Sign in with GitHub" not in await page.text()
        stack.sim.oauth.remove_member("acme/dev", "mona")
        async with http.get(f"{stack.base_url}/") as page:
            assert "Sign in with GitHub" in await page.text()
    stack.sim.oauth.add_member("acme/dev", "mona")
    async with _browser() as http:
        assert (await _sign_in(http, stack))[0] == 200
        stack.sim.oauth.revoke("mona")
        async with http.get(f"{stack.base_url}/") as page:
            assert "Sign in with GitHub" in await page.text()


async def test_the_sandbox_signs_in_the_user_it_was_given(tmp_path: Path) -> None:
    from ghapp.simulator.sandbox import Sandbox

    sandbox = await Sandbox.start(database_url=f"sqlite:///{tmp_path}/sandbox.db",
                                  github_user="octocat", github_teams=("acme/ops",))
    try:
        assert sandbox.stack.settings.page_auth == "github"
        async with _browser() as http:
            status, text = await _sign_in(http, sandbox.stack)
            assert status == 200 and "Sign in with GitHub" not in text
    finally:
        await sandbox.close()


def _browse(base_url: str, profile: Path, shot: Path | None) -> dict[str, str]:
    """In headless Chromium: the sign-in page, GitHub's authorize page, then the page itself."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(profile)
    seen: dict[str, str] = {}
    try:
        driver.get(base_url + "/")
        button = WebDriverWait(driver, 20).until(
            expected_conditions.element_to_be_clickable((By.ID, "github-signin")))
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shot))
        button.click()
        WebDriverWait(driver, 20).until(
            expected_conditions.element_to_be_clickable((By.ID, "authorize"))).click()
        WebDriverWait(driver, 20).until(
            lambda d: (d.current_url.startswith(base_url)
            and "/auth/github" not in d.current_url) or d.find_elements(By.ID, "refused"))
        seen["url"] = driver.current_url
        seen["text"] = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    return seen


async def test_sign_in_and_refusal_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    artifacts = Path(os.environ.get("GHAPP_ARTIFACTS") or tmp_path)
    seen = await asyncio.to_thread(_browse, stack.base_url, tmp_path / "profile-1",
                                   artifacts / "signin.png")
    if os.environ.get("GHAPP_UPDATE_DOCS") == "1" or os.environ.get("GHAPP_WRITE_DOCS_ASSETS"):
        shutil.copyfile(artifacts / "signin.png", DOCS / "signin.png")
    assert "Sign in with GitHub" not in seen["text"]
    assert "Deployments" in seen["text"] or "deployments" in seen["text"]
    stack.sim.oauth.login = "stranger"
    refused = await asyncio.to_thread(_browse, stack.base_url, tmp_path / "profile-2", None)
    assert "stranger" in refused["text"] and "acme/dev" in refused["text"]
    assert "not a member" in refused["text"]


def _signed_in(driver: Any, base_url: str) -> Any:
    """Sign in with GitHub from the operator page; a wait for what follows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20)
    driver.get(base_url + "/")
    wait.until(expected_conditions.element_to_be_clickable((By.ID, "github-signin"))).click()
    wait.until(expected_conditions.element_to_be_clickable((By.ID, "authorize"))).click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "environments")))
    return wait


def _roll_back(base_url: str, profile: Path) -> dict[str, str]:
    """Sign in with GitHub in Chromium and press the rollback button of acme/shop production."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    driver = _chrome(profile)
    try:
        wait = _signed_in(driver, base_url)
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-environment="acme/shop/production"]')
        row.find_element(By.CSS_SELECTOR, "button.rollback").click()
        notice = wait.until(expected_conditions.presence_of_element_located((By.ID, "notice")))
        return {"notice": notice.text}
    finally:
        driver.quit()


async def test_an_admin_team_member_rolls_back_in_headless_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from ghapp.cli.demo import demo_workflows

    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    first = None
    for version in ("v1", "v2"):
        status, body = await stack.deploy("acme/shop", inputs={"version": version})
        assert status == 202, body
        done = (await stack.receiver.wait_for(body["id"])).deployment
        first = first or done
    assert first is not None
    stack.sim.oauth.login = "hubot"
    seen = await asyncio.to_thread(_roll_back, stack.base_url, tmp_path / "profile")
    assert "Rollback dispatched" in seen["notice"]
    _, listing = await stack.get("/api/v1/deployments?repository=acme/shop&limit=5")
    newest = listing["deployments"][0]
    assert newest["kind"] == "rollback" and newest["rollback_of"] == first["id"]
    assert newest["requested_by"] == "github:hubot"
    _, audit = await stack.get("/api/v1/audit?action=rollback.create")
    assert [e["actor"] for e in audit["entries"]][:1] == ["github:hubot"]
    _, signins = await stack.get("/api/v1/audit?action=signin&actor=github:hubot")
    assert signins["entries"]


def _removed_mid_session(base_url: str, profile: Path, remove: Any) -> dict[str, str]:
    """Sign in with GitHub in Chromium, have `remove` take the person off the team, reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    driver = _chrome(profile)
    try:
        wait = _signed_in(driver, base_url)
        remove()
        driver.get(base_url + "/")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "github-signin")))
        return {"text": driver.find_element(By.TAG_NAME, "body").text}
    finally:
        driver.quit()


async def test_a_member_removed_from_the_team_loses_access_in_headless_chromium(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    # The recheck (10 minutes in production) is due at every request here.
    monkeypatch.setattr(signin, "RECHECK_SECONDS", 0)
    seen = await asyncio.to_thread(
        _removed_mid_session, stack.base_url, tmp_path / "profile",
        lambda: stack.sim.oauth.remove_member("acme/dev", "mona"),
    )
    assert "Sign in with GitHub" in seen["text"]
    _, signouts = await stack.get("/api/v1/audit?action=signout&actor=github:mona")
    assert signouts["entries"][0]["reason"] == "no longer a team member"


def test_page_auth_github_without_teams_stops_start_up() -> None:
    from ghapp.config import Settings

    settings = Settings(_env_file=None, page_auth="github")
    problems = "\n".join(settings.serve_problems())
    assert "PAGE_TEAMS: required when PAGE_AUTH=github" in problems
    assert "PUBLIC_URL" in problems and "GITHUB_CLIENT_ID" in problems
    assert "PAGE_TEAMS" not in "\n".join(Settings(_env_file=None).serve_problems())
    with pytest.raises(ValueError, match="org/team"):
        Settings(_env_file=None, page_teams="acme")
    assert Settings(_env_file=None, github_api_url="https://ghe.acme.test/api/v3").web_url() == (
        "https://ghe.acme.test")
