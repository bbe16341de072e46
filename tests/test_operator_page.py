"""The operator page at `/`: access rules over HTTP, and the whole page in a real headless Chromium.

The browser test needs Debian's `chromium` and `chromium-driver` (see .ci/run) and Selenium; it
skips, saying why, where they are absent. Its screenshot goes to $GHAPP_ARTIFACTS (default: the
test's tmp_path), and also to docs/operator-page.png when GHAPP_UPDATE_DOCS=1.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.receiver import ReceivedCallback
from ghapp.simulator.stack import Stack
from ghapp.web.operator.access import back
from ghapp.web.operator.render import safe_url
from ghapp.web.operator.sessions import SESSION_COOKIE, make_session_cookie, read_session_cookie

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "operator-page.png"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    yield stack
    await stack.close()


async def _settled(stack: Stack, deployment_id: str) -> dict[str, Any]:
    """The deployment once its callback's outcome is recorded."""
    async with asyncio.timeout(15):
        while True:
            _, body = await stack.get(f"/api/v1/deployments/{deployment_id}")
            if body["callback"]["state"] != "pending":
                return dict(body)
            await asyncio.sleep(0.05)


async def _deploy_both(stack: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """A succeeding and a failing deployment, both delivered to the receiver."""
    status, shop = await stack.deploy("acme/shop", inputs={"environment": "production"})
    assert status == 202, shop
    status, api = await stack.deploy("acme/api", inputs={"environment": "production"})
    assert status == 202, api
    for deployment in (shop, api):
        await stack.receiver.wait_for(deployment["id"])
    return await _settled(stack, shop["id"]), await _settled(stack, api["id"])


async def _page(stack: Stack, path: str = "/", **kwargs: Any) -> tuple[int, str, Any]:
    assert stack.session is not None
    async with stack.session.get(
        stack.base_url + path, allow_redirects=False, **kwargs
    ) as response:
        return response.status, await response.text(), response.headers


async def _login(stack: Stack, token: str) -> tuple[int, Any]:
    assert stack.session is not None
    async with stack.session.post(
        stack.base_url + "/login", data={"token": token}, allow_redirects=False
    ) as response:
        return response.status, response.headers


def _session_cookie(headers: Any) -> tuple[str, str]:
    """The session cookie's value and its full Set-Cookie line."""
    for line in headers.getall("Set-Cookie", []):
        cookie: SimpleCookie = SimpleCookie(line)
        if SESSION_COOKIE in cookie:
            return cookie[SESSION_COOKIE].value, line
    raise AssertionError("no session cookie set")


# --- HTTP-level rules ---------------------------------------------------------------------------


async def test_without_a_session_the_page_is_only_a_login_form(stack: Stack) -> None:
    await _deploy_both(stack)
    status, html, headers = await _page(stack)
    assert status == 200
    assert 'action="/login"' in html and 'type="password"' in html
    assert "acme/shop" not in html and "dep_" not in html
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers it
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


async def test_a_wrong_token_is_refused(stack: Stack) -> None:
    status, headers = await _login(stack, "not-the-token")
    assert status == 401
    assert SESSION_COOKIE not in headers.get("Set-Cookie", "")


async def test_login_sets_a_strict_http_only_signed_cookie(stack: Stack) -> None:
    shop, api = await _deploy_both(stack)
    status, headers = await _login(stack, stack.settings.orchestrator_token or "")
    assert status == 303 and headers["Location"] == "/"
    value, line = _session_cookie(headers)
    assert re.search(r"(?i)httponly", line)
    assert re.search(r"(?i)samesite=strict", line)
    assert stack.settings.orchestrator_token not in line
    status, html, _ = await _page(stack, headers={"Cookie": f"{SESSION_COOKIE}={value}"})
    assert status == 200
    assert shop["id"] in html and api["id"] in html
    # A cookie changed by one character is no session.
    forged = value[:-1] + ("A" if value[-1] != "A" else "B")
    _, html, _ = await _page(stack, headers={"Cookie": f"{SESSION_COOKIE}={forged}"})
    assert 'action="/login"' in html and shop["id"] not in html


async def test_the_bearer_token_works_too_and_filters_apply(stack: Stack) -> None:
    shop, api = await _deploy_both(stack)
    status, html, _ = await _page(stack, "/?repository=acme/api", headers=stack.auth)
    assert status == 200
    assert api["id"] in html and shop["id"] not in html
    assert "cause-category" in html and ">infrastructure</span>" in html
    _, html, _ = await _page(stack, "/?state=dispatched", headers=stack.auth)
    # The deployments table (the environments above it show releases whatever the filter).
    table = html.split('id="deployments"', 1)[1]
    assert api["id"] not in table and shop["id"] not in table
    _, html, _ = await _page(stack, "/?state=bogus", headers=stack.auth)
    assert "unknown state" in html and api["id"] in html
    status, html, _ = await _page(stack, "/?repository=%00&limit=x", headers=stack.auth)
    assert status == 200 and api["id"] in html


async def test_the_page_works_with_the_delivery_log_off(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}", delivery_log_days=0)
    try:
        status, html, _ = await _page(stack, headers=stack.auth)
        assert status == 200
        assert "delivery log is off" in html
    finally:
        await stack.close()


async def test_everything_shown_is_escaped(stack: Stack) -> None:
    # GitHub's refusal quotes the ref, and the page shows it in the verdict's summary.
    status, body = await stack.deploy("acme/shop", ref="<script>alert(1)</script>")
    assert status == 202 and body["state"] == "completed", body
    _, html, _ = await _page(stack, headers=stack.auth)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_resend_needs_the_session_and_its_csrf_token(stack: Stack) -> None:
    shop, _ = await _deploy_both(stack)
    assert stack.session is not None
    _, headers = await _login(stack, stack.settings.orchestrator_token or "")
    value, _ = _session_cookie(headers)
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    url = f"{stack.base_url}/ui/deployments/{shop['id']}/resend"
    # No session: 401 and the login form; with the session but without its CSRF token: refused.
    async with stack.session.post(url, data={}, allow_redirects=False) as response:
        assert response.status == 401
        assert 'action="/login"' in await response.text()
    async with stack.session.post(
        url, data={"csrf": "wrong"}, headers=cookie, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/?notice=csrf"
    await asyncio.sleep(0.3)
    assert len([c for c in stack.receiver.received if c.deployment["id"] == shop["id"]]) == 1
    session = read_session_cookie(stack.settings, value)
    assert session is not None
    form = {"csrf": session.csrf, "back": "//evil.example/?repository=x"}
    async with stack.session.post(url, data=form, headers=cookie, allow_redirects=False) as resp:
        assert resp.status == 303
        # The off-site target is ignored: redirects stay on this site.
        assert resp.headers["Location"] == "/?notice=resent"
    await _second_callback(stack, shop["id"])


async def _second_callback(stack: Stack, deployment_id: str) -> list[ReceivedCallback]:
    async with asyncio.timeout(15):
        while True:
            got = [c for c in stack.receiver.delivered() if c.deployment["id"] == deployment_id]
            if len(got) >= 2:
                return got
            await asyncio.sleep(0.05)


def test_session_cookies_expire_and_follow_the_token() -> None:
    from ghapp.config import Settings

    settings = Settings(_env_file=None, orchestrator_token="t1")
    value, session = make_session_cookie(settings, now=1000.0)
    assert read_session_cookie(settings, value, now=1001.0) == session
    assert read_session_cookie(settings, value, now=session.expires + 1.0) is None
    rotated = Settings(_env_file=None, orchestrator_token="t2")
    assert read_session_cookie(rotated, value, now=1001.0) is None
    assert read_session_cookie(settings, "garbage", now=1001.0) is None


def test_links_and_redirects_stay_safe() -> None:
    assert safe_url("https://github.com/acme/shop/actions/runs/1")
    assert safe_url("javascript:alert(1)") is None
    assert safe_url(None) is None
    assert back("/?state=completed", "resent") == "/?state=completed&notice=resent"
    assert back("https://evil.example/") == "/"
    assert back("//evil.example/") == "/"
    assert back("/\\evil.example") == "/"


# --- in a real browser ----------------------------------------------------------------------------


def _browser_missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is absent (apt-get install chromium chromium-driver)"
    if not os.access(CHROMEDRIVER, os.X_OK):
        return f"{CHROMEDRIVER} is absent (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def _chrome(profile: Path) -> Any:
    """A headless Chromium driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # Debian's browser and driver: Selenium Manager must not try to download either.
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _drive(
    base_url: str, token: str, ids: dict[str, str], profile: Path, screenshot: Path
) -> dict[str, Any]:
    """Log in through the form, check the table, screenshot it, click one resend (sync)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(profile)
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 15)
        driver.get(base_url + "/")
        seen["login_title"] = driver.title
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "deployments")))
        seen["cookie_http_only"] = [
            c.get("httpOnly") for c in driver.get_cookies() if c["name"] == SESSION_COOKIE
        ]
        for name, deployment_id in ids.items():
            row = driver.find_element(By.CSS_SELECTOR, f'tr[data-deployment-id="{deployment_id}"]')
            causes = row.find_elements(By.CSS_SELECTOR, ".cause-category")
            seen[name] = {
                "cause": causes[0].text if causes else None,
                "verdict": row.find_element(By.CSS_SELECTOR, ".verdict-status").text,
                "text": row.text,
                "run_link": row.find_element(By.CSS_SELECTOR, "a.run-link").get_attribute("href"),
                "callback": row.find_element(By.CSS_SELECTOR, ".callback-state").text,
            }
        seen["deliveries"] = len(driver.find_elements(By.CSS_SELECTOR, "tr[data-delivery-guid]"))
        # Open the failed job's log excerpt, as an operator would, for the screenshot.
        failed = driver.find_element(By.CSS_SELECTOR, f'tr[data-deployment-id="{ids["failure"]}"]')
        failed.find_element(By.CSS_SELECTOR, "details summary").click()
        seen["excerpt"] = failed.find_element(By.CSS_SELECTOR, "details pre").text
        # The whole page, not just the first screenful.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-deployment-id="{ids["success"]}"]')
        row.find_element(By.CSS_SELECTOR, "button.resend").click()
        notice = wait.until(expected_conditions.presence_of_element_located((By.ID, "notice")))
        seen["notice"] = notice.text
        seen["url_after"] = driver.current_url
    finally:
        driver.quit()
    return seen


async def test_operator_page_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    shop, api = await _deploy_both(stack)
    first = [c for c in stack.receiver.delivered() if c.deployment["id"] == shop["id"]]
    assert len(first) == 1
    artifacts = Path(os.environ.get("GHAPP_ARTIFACTS") or tmp_path)
    screenshot = artifacts / "operator-page.png"
    seen = await asyncio.to_thread(
        _drive,
        stack.base_url,
        stack.settings.orchestrator_token or "",
        {"success": shop["id"], "failure": api["id"]},
        tmp_path / "chromium-profile",
        screenshot,
    )
    assert seen["cookie_http_only"] == [True]
    assert seen["success"]["verdict"] == "success"
    assert "https://shop.example.com" in seen["success"]["text"]
    assert seen["success"]["run_link"] == shop["run"]["html_url"]
    assert seen["success"]["callback"] == "delivered"
    assert seen["failure"]["verdict"] == "failure"
    assert api["verdict"]["summary"] in seen["failure"]["text"]
    # The cause beside the verdict: the category as a badge, and the hint.
    assert seen["success"]["cause"] is None
    assert seen["failure"]["cause"] == "infrastructure"
    assert api["verdict"]["cause"]["hint"] in seen["failure"]["text"]
    assert "Connection refused" in seen["excerpt"]
    assert seen["failure"]["callback"] == "delivered"
    assert seen["deliveries"] > 0
    assert "Callback queued again" in seen["notice"]
    # The resend reached the orchestrator as the same delivery (same X-Ghapp-Delivery).
    both = await _second_callback(stack, shop["id"])
    assert both[0].headers["X-Ghapp-Delivery"] == both[1].headers["X-Ghapp-Delivery"]
    assert both[1].signature_ok
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("GHAPP_UPDATE_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    print(f"operator page screenshot: {screenshot}")


async def test_redeliver_asks_github_to_send_the_webhook_again(stack: Stack) -> None:
    await _deploy_both(stack)
    status, listing = await stack.get("/api/v1/deliveries?limit=100")
    assert status == 200 and listing["enabled"], listing
    [wanted] = [d for d in listing["deliveries"] if d["event"] == "workflow_run"][:1]
    guid = wanted["delivery_id"]
    assert stack.session is not None
    async with stack.session.post(
        f"{stack.base_url}/ui/deliveries/{guid}/redeliver",
        data={"back": "/?state=completed"},
        headers=stack.auth,
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/?state=completed&notice=redelivered"
    async with asyncio.timeout(15):
        while True:
            _, listing = await stack.get("/api/v1/deliveries?limit=200")
            again = [d for d in listing["deliveries"] if d["delivery_id"] == guid]
            if len(again) >= 2:
                break
            await asyncio.sleep(0.05)
    async with stack.session.post(
        f"{stack.base_url}/ui/deliveries/no-such-guid/redeliver",
        headers=stack.auth,
        allow_redirects=False,
    ) as response:
        assert response.headers["Location"] == "/?notice=delivery_unknown"


def _watch_live(
    base_url: str, token: str, deployment_id: str, profile: Path, moves: list[threading.Event]
) -> dict[str, Any]:
    """Log in, then read the deployment's row as the test moves its run on (sync)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(profile)
    seen: dict[str, Any] = {}
    row_css = f'tr[data-deployment-id="{deployment_id}"]'

    def read() -> dict[str, Any]:
        row = driver.find_element(By.CSS_SELECTOR, row_css)
        bar = row.find_elements(By.CSS_SELECTOR, "progress")
        return {
            "state": row.find_element(By.CSS_SELECTOR, ".state-badge").text,
            "value": float(bar[0].get_attribute("value") or 0) if bar else None,
            "max": float(bar[0].get_attribute("max") or 0) if bar else None,
            "text": row.find_element(By.CSS_SELECTOR, ".progress-text").text,
            "verdict": row.find_element(By.CSS_SELECTOR, ".verdict").text,
        }

    try:
        wait = WebDriverWait(driver, 15)
        driver.get(base_url + "/")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, row_css)))
        driver.execute_script("window.notReloaded = true;")
        seen["before"] = read()
        moves[0].set()  # the run starts now: its job is busy in a step
        wait.until(lambda _d: (read()["value"] or 0) > 0)
        seen["during"] = read()
        moves[1].set()  # the run ends now
        wait.until(lambda _d: read()["state"] == "completed")
        seen["after"] = read()
        seen["not_reloaded"] = driver.execute_script("return window.notReloaded === true;")
        seen["errors"] = [
            entry["message"]
            for entry in driver.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    return seen


async def test_running_deployments_move_live_in_headless_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    stack.sim.auto = False
    status, body = await stack.deploy("acme/shop")
    assert status == 202
    run_id = body["run"]["id"]
    moves = [threading.Event(), threading.Event()]
    watching = asyncio.create_task(
        asyncio.to_thread(
            _watch_live,
            stack.base_url,
            stack.settings.orchestrator_token or "",
            body["id"],
            tmp_path / "chromium-profile",
            moves,
        )
    )
    for move, step in zip(moves, (stack.sim.advance, stack.sim.finish), strict=True):
        async with asyncio.timeout(30):
            while True:
                if move.is_set() or watching.done():
                    break
                await asyncio.sleep(0.05)
        await step(run_id)
    seen = await asyncio.wait_for(watching, 60)
    assert seen["before"]["state"] == "dispatched" and seen["before"]["value"] == 0
    assert "waiting for the run" in seen["before"]["text"]
    during = seen["during"]
    assert during["state"] == "in progress"
    assert 0 < during["value"] < during["max"]
    assert f"{int(during['value'])}/{int(during['max'])} steps" in during["text"]
    assert "success" in seen["after"]["verdict"]
    assert seen["after"]["value"] == seen["after"]["max"]
    assert seen["not_reloaded"], "the page moved without reloading"
    assert seen["errors"] == []
