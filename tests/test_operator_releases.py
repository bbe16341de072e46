"""The operator page's environments (current release, rollback button) and statistics charts:
over HTTP for the rules, and in a real headless Chromium for what a person sees.

The screenshot goes to $GHAPP_ARTIFACTS (default: the test's tmp_path), and to
docs/operator-releases.png when GHAPP_UPDATE_DOCS=1."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_operator_page import (
    CHROMEDRIVER,
    CHROMIUM,
    _browser_missing,
    _login,
    _page,
    _session_cookie,
)

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import Stack
from ghapp.web.operator import charts
from ghapp.web.operator.sessions import SESSION_COOKIE, read_session_cookie

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "operator-releases.png"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    yield stack
    await stack.close()


async def _history(stack: Stack) -> list[dict[str, Any]]:
    """Two releases of acme/shop (v1, v2) and a failure of acme/api, all reported."""
    done = []
    for repository, version in (("acme/shop", "v1"), ("acme/shop", "v2"), ("acme/api", "v7")):
        status, body = await stack.deploy(repository, inputs={"version": version})
        assert status == 202, body
        done.append((await stack.receiver.wait_for(body["id"])).deployment)
    return done


async def test_rollback_button_needs_the_session_and_its_csrf_token(stack: Stack) -> None:
    await _history(stack)
    assert stack.session is not None
    _, headers = await _login(stack, stack.settings.orchestrator_token or "")
    value, _ = _session_cookie(headers)
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    url = f"{stack.base_url}/ui/repos/acme/shop/environments/production/rollback"
    runs = len(stack.sim.world.runs)
    # No session: the sign-in form (401); the session without its CSRF token: refused.
    async with stack.session.post(url, data={}, allow_redirects=False) as response:
        assert response.status == 401
    async with stack.session.post(
        url, data={"csrf": "wrong"}, headers=cookie, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert "rollback_started" not in response.headers["Location"]
    assert len(stack.sim.world.runs) == runs
    session = read_session_cookie(stack.settings, value)
    assert session is not None
    async with stack.session.post(
        url, data={"csrf": session.csrf, "back": "/"}, headers=cookie, allow_redirects=False
    ) as response:
        assert response.headers["Location"] == "/?notice=rollback_started"
    assert len(stack.sim.world.runs) == runs + 1
    # acme/api has no release at all: nothing to restore.
    url = f"{stack.base_url}/ui/repos/acme/api/environments/production/rollback"
    async with stack.session.post(
        url, data={"csrf": session.csrf}, headers=cookie, allow_redirects=False
    ) as response:
        assert response.headers["Location"] == "/?notice=no_release"


async def test_page_shows_releases_statistics_and_svg_charts(stack: Stack) -> None:
    _, second, failed = await _history(stack)
    status, html, _ = await _page(stack, headers=stack.auth)
    assert status == 200
    assert 'data-environment="acme/shop/production"' in html
    assert "Roll back to v1" in html and second["id"] in html
    assert html.count("<svg") == 2 and 'class="bar failure"' in html
    assert "<script" not in html and "style=" not in html.split("</style>", 1)[1]
    _, filtered, _ = await _page(stack, "/?repository=acme/api", headers=stack.auth)
    assert "acme/shop/production" not in filtered and failed["id"] in filtered


def test_charts_escape_and_scale() -> None:
    days = [
        charts.Day("2026-12-01", 3, 1, 120.0),
        charts.Day("2026-<b>x</b>", 0, 0, None),
        charts.Day("2026-12-03", 0, 2, 60.0),
    ]
    bars = charts.deployments_per_day(days)
    assert "<b>" not in bars and "&lt;b&gt;" in bars
    assert bars.count('class="bar success"') == 1 and bars.count('class="bar failure"') == 2
    assert charts.duration_over_time(days).count('class="point"') == 2
    assert charts.deployments_per_day([]).startswith("<svg")


async def _seed_a_month(database_url: str) -> None:
    """Thirty days of earlier deployments, so that the charts have something to show."""
    import random
    import time

    from test_stats import record

    from ghapp.store import SqlStore

    rng = random.Random(15)
    store = SqlStore(database_url)
    await store.open()
    try:
        start = time.time() - 30 * 86400
        for number in range(90):
            failed = rng.random() < 0.2
            environment = "production" if number % 3 else "staging"
            made = record(
                5000 + number, at=start + number * 8 * 3600 + rng.uniform(0, 3600),
                duration=rng.uniform(150, 420) + (120 if failed else 0),
                status="failure" if failed else "success",
                reason="failure" if failed else None, environment=environment,
            )
            made.inputs["version"] = f"1.{number}.0"
            await store.create(made)
    finally:
        await store.close()


def _drive(base_url: str, token: str, profile: Path, screenshot: Path) -> dict[str, Any]:
    """Sign in, read the environments and charts, screenshot, click the rollback button."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--window-size=1440,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 15)
        driver.get(base_url + "/")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "environments")))
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-environment="acme/shop/production"]')
        seen["current"] = row.find_element(By.CSS_SELECTOR, ".current-release .version").text
        seen["button"] = row.find_element(By.CSS_SELECTOR, "button.rollback").text
        bars = driver.find_elements(By.CSS_SELECTOR, "#chart-per-day svg rect.bar")
        seen["bars"] = sorted(bar.get_attribute("class") for bar in bars)
        seen["bar_height"] = max(float(bar.get_attribute("height")) for bar in bars)
        svg = driver.find_element(By.CSS_SELECTOR, "#chart-per-day svg")
        seen["chart_size"] = (svg.size["width"], svg.size["height"])
        seen["points"] = len(driver.find_elements(By.CSS_SELECTOR, "#chart-duration circle"))
        api = driver.find_element(By.CSS_SELECTOR, 'tr[data-stats="acme/api/production"]')
        seen["cfr"] = api.find_element(By.CSS_SELECTOR, ".cfr").text
        # The environments and statistics: the top of the page.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": 860, "deviceScaleFactor": 1, "mobile": False},
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-environment="acme/shop/production"]')
        row.find_element(By.CSS_SELECTOR, "button.rollback").click()
        notice = wait.until(expected_conditions.presence_of_element_located((By.ID, "notice")))
        seen["notice"] = notice.text
    finally:
        driver.quit()
    return seen


async def test_releases_and_charts_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    await _seed_a_month(stack.settings.database_url)
    first, _, _ = await _history(stack)
    artifacts = Path(os.environ.get("GHAPP_ARTIFACTS") or tmp_path)
    screenshot = artifacts / "operator-releases.png"
    seen = await asyncio.to_thread(
        _drive, stack.base_url, stack.settings.orchestrator_token or "",
        tmp_path / "chromium-profile", screenshot,
    )
    assert seen["current"] == "v2"
    assert seen["button"] == "Roll back to v1"
    assert {"bar failure", "bar success"} == set(seen["bars"]) and len(seen["bars"]) > 20
    assert seen["bar_height"] > 10 and seen["chart_size"][0] > 300
    assert seen["points"] > 20
    assert seen["cfr"] == "100 %"
    assert "Rollback dispatched" in seen["notice"]
    _, listing = await stack.get("/api/v1/deployments?repository=acme/shop&limit=5")
    newest = listing["deployments"][0]
    assert newest["kind"] == "rollback" and newest["rollback_of"] == first["id"]
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("GHAPP_UPDATE_DOCS") == "1":
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
    print(f"operator releases screenshot: {screenshot}")
