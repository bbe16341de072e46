"""The operator page of one deployment, `/deployments/{id}`: access, 404 and escaping over HTTP;
the safe rendering of a crafted report; and, in a real headless Chromium, the page moving live
while a run goes on and after a failure, and the list and the page at 1,280 px with nothing cut.

The browser tests skip, saying why, without Debian's chromium/chromedriver or Selenium. Their
screenshots go to $GHAPP_ARTIFACTS (default: the test's tmp_path), and to
docs/deployment-page.png and docs/deployment-page-failure.png when GHAPP_UPDATE_DOCS=1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_operator_page import _browser_missing, _chrome, _page, _session_cookie

from ghapp.cli.demo import demo_workflows
from ghapp.simulator import Job, Step, Workflow
from ghapp.simulator.stack import Stack
from ghapp.web.operator.sessions import SESSION_COOKIE

DOCS = Path(__file__).resolve().parents[1] / "docs"
# What a stranger who can push a workflow might print: markup, a script link, escape codes.
CRAFTED = "<img src=x onerror=alert(1)><script>alert(2)</script> [docs](javascript:alert(3))"
LONG_REPOSITORY = "acme/a-repository-with-a-rather-long-name-to-test-the-widths-of-the-table"


def crafted_workflow() -> Workflow:
    """Two jobs; the second fails on SSH, its log carrying markup and an escape sequence."""
    setup = [Step("Set up job"), Step("Run actions/checkout@v4", command="actions/checkout@v4")]
    build = Job(
        name="build",
        steps=[
            *setup,
            Step(
                "Build and push the image",
                command="docker build -t ghcr.io/acme/web:${GITHUB_SHA} .",
                output=["#1 [internal] load build definition from Dockerfile", "#9 DONE 4.2s"],
            ),
        ],
    )
    deploy = Job(
        name="deploy",
        needs=["build"],
        environment="production",
        environment_url="https://web.example.com",
        steps=[
            *setup,
            Step(
                "Deploy on the server",
                command="./deploy.sh",
                fail=True,
                output=[
                    "Pulling ghcr.io/acme/web on deploy@203.0.113.10",
                    f"\x1b[31m{CRAFTED}\x1b[0m",
                    "ssh: connect to host 203.0.113.10 port 22: Connection refused",
                ],
                error="Process completed with exit code 255.",
            ),
        ],
    )
    return Workflow(file="deploy.yml", name="Deploy", jobs=[build, deploy])


async def _started(database_url: str) -> Stack:
    stack = await Stack.start(database_url)
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    stack.sim.add_repository("acme/web", default_branch="main").add_workflow(crafted_workflow())
    return stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await _started(f"sqlite:///{tmp_path / 'ghapp.db'}")
    yield stack
    await stack.close()


@pytest.fixture
async def stack_on_each_database(database_url: str) -> AsyncIterator[Stack]:
    """The same, on SQLite and on PostgreSQL (where GHAPP_TEST_POSTGRES_URL is set)."""
    stack = await _started(database_url)
    yield stack
    await stack.close()


async def _settled(stack: Stack, deployment_id: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            _, body = await stack.get(f"/api/v1/deployments/{deployment_id}")
            if body["callback"]["state"] != "pending":
                return dict(body)
            await asyncio.sleep(0.05)


async def _deployed(stack: Stack, repository: str, **body: Any) -> dict[str, Any]:
    status, started = await stack.deploy(repository, **body)
    assert status == 202, started
    await stack.receiver.wait_for(started["id"])
    return await _settled(stack, started["id"])


class Elements(HTMLParser):
    """Every start tag of a document with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def assert_nothing_obeyed(html: str) -> None:
    """No element, attribute or link came from the crafted text; no escape code got through."""
    tags = elements(html)
    assert not [t for t, _ in tags if t in ("img", "iframe", "object", "embed")]
    assert not [a for _, a in tags if "onerror" in a or "onload" in a or "onclick" in a]
    hrefs = [a.get("href") or "" for _, a in tags]
    assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))]
    assert "\x1b" not in html and "[31m" not in html
    # The page's own script (the nonce'd one) is the only script there may be.
    scripts = [a for t, a in tags if t == "script"]
    assert all(a.get("nonce") for a in scripts)
    assert "<script>alert(2)</script>" not in html


# --- over HTTP ----------------------------------------------------------------------------------


async def test_the_page_needs_the_same_sign_in_as_the_list(stack: Stack) -> None:
    shop = await _deployed(stack, "acme/shop", inputs={"environment": "production"})
    path = f"/deployments/{shop['id']}"
    status, html, headers = await _page(stack, path)
    assert status == 401
    # Nothing of the deployment but its id, which the address holds anyway.
    assert 'action="/login"' in html and "acme/shop" not in html and "run" not in html
    # Signing in from here comes back here, and only ever to a path of this site.
    assert f'name="next" value="{path}"' in html
    status, _, _ = await _page(stack, path + "/live")
    assert status == 401
    assert stack.session is not None
    async with stack.session.post(
        stack.base_url + "/login",
        data={"token": stack.settings.orchestrator_token or "", "next": path},
        allow_redirects=False,
    ) as response:
        assert response.status == 303 and response.headers["Location"] == path
        value, _ = _session_cookie(response.headers)
    async with stack.session.post(
        stack.base_url + "/login",
        data={"token": stack.settings.orchestrator_token or "", "next": "//evil.example/x"},
        allow_redirects=False,
    ) as response:
        assert response.headers["Location"] == "/"
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}
    status, html, headers = await _page(stack, path, headers=cookie)
    assert status == 200 and shop["id"] in html
    # Finished: nothing left to follow, so no script at all, and the CSP allows none.
    assert "script-src" not in headers["Content-Security-Policy"] and "<script" not in html
    status, html, _ = await _page(stack, path, headers=stack.auth)
    assert status == 200
    # What was asked, the commit as GitHub shows it, links to the run and its job.
    assert shop["run"]["html_url"] in html
    assert shop["progress"]["jobs"][0]["html_url"] in html
    status, fragment, headers = await _page(stack, path + "/live", headers=cookie)
    assert status == 200 and fragment.lstrip().startswith('<div id="live"')
    assert headers["X-Frame-Options"] == "DENY"


async def test_an_unknown_deployment_is_a_404_page(stack: Stack) -> None:
    for path in ("/deployments/dep_00000000000000000000000", "/deployments/%3Cb%3Ex"):
        status, html, headers = await _page(stack, path, headers=stack.auth)
        assert status == 404, path
        assert "No such deployment" in html and "<b>x" not in html
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, _ = await _page(stack, "/deployments/dep_nope/live", headers=stack.auth)
    assert status == 404


async def test_the_page_shows_what_was_asked_and_how_long_it_took(
    stack_on_each_database: Stack,
) -> None:
    stack = stack_on_each_database
    shop = await _deployed(
        stack,
        "acme/shop",
        inputs={"environment": "production", "version": "v1.4.2"},
        metadata={"ticket": "OPS-7", "note": "<i>hello</i>"},
    )
    status, html, _ = await _page(stack, f"/deployments/{shop['id']}", headers=stack.auth)
    assert status == 200
    for text in ("acme/shop", "production", "deploy.yml", "v1.4.2", "OPS-7", "main"):
        assert text in html, text
    assert "<i>hello</i>" not in html and "&lt;i&gt;hello&lt;/i&gt;" in html
    # Durations of each phase and the moments, a time line of the job and its steps.
    for name in ("queued", "running", "verdict", "total"):
        assert f'data-duration="{name}"' in html
    tags = elements(html)
    bars = [a for t, a in tags if t == "rect" and "bar" in (a.get("class") or "")]
    # One bar per step GitHub reported times for (the job's steps, and GitHub's own set-up
    # and completion steps).
    assert stack.session is not None
    async with stack.session.get(
        f"{stack.base_url}/api/v1/deployments/{shop['id']}", headers=stack.auth
    ) as response:
        progress = (await response.json())["progress"]
    timed = [s for job in progress["jobs"] for s in job["steps"] if s.get("started_at")]
    assert timed
    assert len([b for b in bars if "step" in (b.get("class") or "")]) == len(timed)
    assert len([b for b in bars if "job" in (b.get("class") or "")]) == 1
    # Who asked: the token's name (ORCHESTRATOR_TOKEN is `orchestrator`).
    assert '<dd class="requested-by">orchestrator</dd>' in html
    assert "https://shop.example.com" in html
    assert 'class="badge ok verdict-status"' in html
    # The callback's attempt, delivered.
    assert "deployment.completed" in html and "HTTP 204" in html


async def test_a_crafted_log_is_shown_quoted_never_obeyed(stack: Stack) -> None:
    web = await _deployed(stack, "acme/web", inputs={"environment": "production"})
    assert web["verdict"]["status"] == "failure"
    assert web["verdict"]["cause"]["category"] == "infrastructure"
    status, html, _ = await _page(stack, f"/deployments/{web['id']}", headers=stack.auth)
    assert status == 200
    assert_nothing_obeyed(html)
    # The crafted line is there, as text.
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # The report rendered from its Markdown: its heading and code, no raw Markdown fences.
    report = html.split('<article class="report">', 1)[1].split("</article>", 1)[0]
    assert report.startswith("<h1>Deploy of <code>acme/web@main</code>")
    assert "<pre><code>" in report and "```" not in report
    # The excerpt, its error line marked.
    excerpt = html.split('<pre class="excerpt">', 1)[1].split("</pre>", 1)[0]
    assert '<mark class="error-line">##[error]Process completed with exit code 255.</mark>' in (
        excerpt
    )
    assert "Connection refused" in excerpt
    # The list shows it escaped too, and links the row to this page.
    status, listing, _ = await _page(stack, "/", headers=stack.auth)
    assert_nothing_obeyed(listing)
    assert f'href="/deployments/{web["id"]}"' in listing


async def test_the_rollback_button_names_the_short_sha_without_a_version(stack: Stack) -> None:
    first = await _deployed(stack, "acme/shop", inputs={"environment": "production"})
    await _deployed(stack, "acme/shop", inputs={"environment": "production"})
    _, release = await stack.get("/api/v1/repos/acme/shop/environments")
    previous = release["environments"][0]["previous"]
    assert previous["deployment_id"] == first["id"] and len(previous["version"]) == 40
    _, html, _ = await _page(stack, "/", headers=stack.auth)
    assert f"Roll back to {previous['version'][:7]}</button>" in html
    assert f"Roll back to {previous['version']}" not in html


# --- in a real browser --------------------------------------------------------------------------


def _sign_in(driver: Any, base_url: str, path: str, token: str) -> None:
    """Open a page, meet the sign-in form, sign in: back on the page asked for."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + path)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    WebDriverWait(driver, 15).until(
        expected_conditions.presence_of_element_located((By.ID, "live"))
    )


def _full_page(driver: Any, width: int, screenshot: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
    )
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))


READ_PAGE = """
const live = document.getElementById("live");
const text = (css) => {
  const n = live.querySelector(css);
  return n ? n.textContent.trim() : null;
};
return {
  state: text(".state-badge"),
  data_state: live.getAttribute("data-state"),
  run_status: text(".run-status"),
  steps: text(".progress-count"),
  step_bars: live.querySelectorAll("svg.timeline rect.bar.step").length,
  running_bars: live.querySelectorAll("svg.timeline rect.bar.running").length,
  verdict: text("#verdict"),
  cause: text(".cause-category"),
  hint: text(".cause-hint"),
  report_h1: text(".report h1"),
  report_code_blocks: live.querySelectorAll(".report pre code").length,
  error_lines: Array.from(live.querySelectorAll("pre.excerpt mark.error-line"))
                    .map((n) => n.textContent),
  excerpt: text("pre.excerpt"),
  imgs: document.querySelectorAll("img").length,
  scripts: document.querySelectorAll("script").length,
  handlers: document.querySelectorAll("[onerror],[onload],[onclick]").length,
  js_links: document.querySelectorAll('a[href^="javascript:"]').length,
  callback: text(".callback-state"),
  commit: text(".sha a"),
  not_reloaded: window.notReloaded === true,
};
"""


def _watch_page(
    base_url: str,
    token: str,
    deployment_id: str,
    profile: Path,
    moves: list[threading.Event],
    shots: dict[str, Path],
) -> dict[str, Any]:
    """Sign in on the deployment's page, then read it as the test moves the run on (sync)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(profile)
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 20)
        _sign_in(driver, base_url, f"/deployments/{deployment_id}", token)
        driver.get_log("browser")  # the sign-in form's 401, read and forgotten
        driver.execute_script("window.notReloaded = true;")
        seen["before"] = driver.execute_script(READ_PAGE)
        moves[0].set()  # the run starts: the first job busy in its last step
        wait.until(lambda d: d.execute_script(READ_PAGE)["running_bars"] > 0)
        seen["during"] = driver.execute_script(READ_PAGE)
        _full_page(driver, 1280, shots["running"])
        moves[1].set()  # the run ends: the deploy job fails
        # The verdict, then its callback delivered: the page follows both.
        wait.until(lambda d: d.execute_script(READ_PAGE)["callback"] == "delivered")
        seen["after"] = driver.execute_script(READ_PAGE)
        _full_page(driver, 1280, shots["failure"])
        seen["errors"] = [
            entry["message"]
            for entry in driver.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    return seen


async def test_the_page_moves_live_and_shows_the_failure_in_headless_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    stack.sim.auto = False
    status, body = await stack.deploy(
        "acme/web", inputs={"environment": "production", "version": "v2.0.1"},
        metadata={"ticket": "OPS-42"},
    )
    assert status == 202, body
    run_id = body["run"]["id"]
    artifacts = Path(os.environ.get("GHAPP_ARTIFACTS") or tmp_path)
    shots = {
        "running": artifacts / "deployment-page.png",
        "failure": artifacts / "deployment-page-failure.png",
    }
    moves = [threading.Event(), threading.Event()]
    watching = asyncio.create_task(
        asyncio.to_thread(
            _watch_page, stack.base_url, stack.settings.orchestrator_token or "", body["id"],
            tmp_path / "chromium-profile", moves, shots,
        )
    )
    for move, step in zip(moves, (stack.sim.advance, stack.sim.finish), strict=True):
        async with asyncio.timeout(40):
            # A threading.Event set by the browser's thread: polled, as the list's test does.
            while True:
                if move.is_set() or watching.done():
                    break
                await asyncio.sleep(0.05)
        if watching.done():
            break
        await step(run_id)
    seen = await asyncio.wait_for(watching, 90)
    before, during, after = seen["before"], seen["during"], seen["after"]
    assert before["state"] == "dispatched" and before["step_bars"] == 0
    # The stream moved it: state, the run's status, the steps on the time line.
    assert during["state"] == "in progress" and during["run_status"] == "in_progress"
    assert during["step_bars"] >= 3 and during["running_bars"] >= 1
    assert during["verdict"] is None
    # Then the failure: cause, hint, the report rendered, the excerpt's error line marked.
    assert after["state"] == "completed" and after["data_state"] == "completed"
    assert after["run_status"] == "failure"
    _, done = await stack.get(f"/api/v1/deployments/{body['id']}")
    assert after["callback"] == "delivered" and after["commit"] is not None
    assert after["cause"] == "infrastructure"
    assert "SSH" in (after["hint"] or "")
    assert after["report_h1"].startswith("Deploy of acme/web@main")
    assert after["report_code_blocks"] >= 2
    assert after["error_lines"] == ["##[error]Process completed with exit code 255."]
    assert "<img src=x onerror=alert(1)>" in after["excerpt"]
    # No element from the crafted log: no image, no handler, no script link, one script.
    assert (after["imgs"], after["handlers"], after["js_links"]) == (0, 0, 0)
    assert after["scripts"] == 1
    assert after["step_bars"] == done["progress"]["steps_total"] and after["running_bars"] == 0
    assert after["not_reloaded"], "the page moved without reloading"
    assert seen["errors"] == []
    for shot in shots.values():
        assert shot.stat().st_size > 10_000
    if os.environ.get("GHAPP_UPDATE_DOCS") == "1":
        for shot in shots.values():
            shutil.copyfile(shot, DOCS / shot.name)
    print(f"deployment page screenshots: {[str(s) for s in shots.values()]}")


FITS = """
const width = window.innerWidth;
const clipped = Array.from(document.querySelectorAll("section, table, .timeline-box"))
  .filter((n) => n.scrollWidth > n.clientWidth + 1)
  .map((n) => (n.id || n.className || n.tagName) + " " + n.scrollWidth + ">" + n.clientWidth);
const buttons = Array.from(document.querySelectorAll(arguments[0])).map((b) => {
  const r = b.getBoundingClientRect();
  const section = b.closest("section").getBoundingClientRect();
  return {text: b.textContent.trim(), left: r.left, right: r.right, visible: r.width > 0,
          inside: r.left >= section.left && r.right <= section.right};
});
return {width: width, scroll: document.documentElement.scrollWidth, clipped: clipped,
        buttons: buttons};
"""


def _check_widths(base_url: str, token: str, deployment_id: str, profile: Path) -> dict[str, Any]:
    """The list and a deployment's page at 1,280 px: what overflows, where the buttons are."""
    from selenium.webdriver.common.by import By

    driver = _chrome(profile)
    seen: dict[str, Any] = {}
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        _sign_in(driver, base_url, f"/deployments/{deployment_id}", token)
        seen["page"] = driver.execute_script(FITS, "button.resend")
        driver.get(base_url + "/")
        # The failure's excerpt opened, as an operator reading it would.
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-deployment-id="{deployment_id}"]')
        row.find_element(By.CSS_SELECTOR, "details summary").click()
        seen["list"] = driver.execute_script(
            FITS, "#deployments td:last-child button, #environments td:last-child button"
        )
        seen["link"] = row.find_element(By.CSS_SELECTOR, "a.deployment-link").get_attribute(
            "href"
        )
    finally:
        driver.quit()
    return seen


async def test_the_list_and_the_page_fit_1280_pixels_in_headless_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    # Long names and long remote text: a long repository, a step name and a log line that
    # no space breaks; two releases for a rollback button, a failure for the excerpt.
    long_step = "Deploy-" + "x" * 150
    workflow = crafted_workflow()
    deploy_job = workflow.jobs[1]
    failing = deploy_job.steps[-1]
    failing.name = long_step
    failing.output = [*failing.output, "https://registry.example.com/" + "a" * 300]
    stack.sim.add_repository(LONG_REPOSITORY, default_branch="main").add_workflow(workflow)
    for version in ("1.0.0-" + "r" * 40, "1.0.1"):
        await _deployed(stack, "acme/shop", inputs={"environment": "production",
                                                    "version": version})
    failed = await _deployed(stack, LONG_REPOSITORY, inputs={"environment": "production"},
                             metadata={"ticket": "T-" + "9" * 120})
    assert failed["verdict"]["status"] == "failure"
    seen = await asyncio.to_thread(
        _check_widths, stack.base_url, stack.settings.orchestrator_token or "", failed["id"],
        tmp_path / "chromium-profile",
    )
    for name in ("page", "list"):
        fits = seen[name]
        assert fits["width"] == 1280, fits
        assert fits["scroll"] <= fits["width"], (name, fits)
        assert fits["clipped"] == [], (name, fits["clipped"])
        assert fits["buttons"], name
        for button in fits["buttons"]:
            assert button["visible"] and button["inside"], (name, button)
            assert button["left"] >= 0 and button["right"] <= fits["width"], (name, button)
    texts = [b["text"] for b in seen["list"]["buttons"]]
    # A long version is cut on the button (its title has it whole).
    assert "Roll back to 1.0.0-" + "r" * 17 + "…" in texts and "Resend callback" in texts
    assert seen["link"].endswith(f"/deployments/{failed['id']}")


def _watch_row(
    base_url: str, token: str, deployment_id: str, profile: Path, moves: list[threading.Event]
) -> dict[str, Any]:
    """Sign in on the list, then read the deployment's row as its run starts and fails."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    row_css = f'tr[data-deployment-id="{deployment_id}"]'
    read = """
    const row = document.querySelector(arguments[0]);
    const text = (css) => { const n = row.querySelector(css); return n ? n.textContent : null; };
    const more = row.querySelector(".verdict a.details-link");
    return {state: text(".state-badge"), run: text(".run-status"), link: text("a.run-link"),
            verdict: text(".verdict-status"), cause: text(".cause-category"),
            hint: text(".cause-hint"), details: more ? more.getAttribute("href") : null,
            not_reloaded: window.notReloaded === true};
    """
    driver = _chrome(profile)
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(base_url + "/")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, row_css)))
        driver.execute_script("window.notReloaded = true;")
        seen["before"] = driver.execute_script(read, row_css)
        moves[0].set()
        wait.until(lambda d: d.execute_script(read, row_css)["run"] == "in_progress")
        seen["during"] = driver.execute_script(read, row_css)
        moves[1].set()
        wait.until(lambda d: d.execute_script(read, row_css)["cause"] is not None)
        seen["after"] = driver.execute_script(read, row_css)
    finally:
        driver.quit()
    return seen


async def test_a_row_that_fails_live_shows_its_run_status_and_cause_in_headless_chromium(
    stack: Stack, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    stack.sim.auto = False
    status, body = await stack.deploy("acme/api", inputs={"environment": "production"})
    assert status == 202, body
    moves = [threading.Event(), threading.Event()]
    watching = asyncio.create_task(
        asyncio.to_thread(
            _watch_row, stack.base_url, stack.settings.orchestrator_token or "", body["id"],
            tmp_path / "chromium-profile", moves,
        )
    )
    for move, step in zip(moves, (stack.sim.advance, stack.sim.finish), strict=True):
        async with asyncio.timeout(40):
            while True:
                if move.is_set() or watching.done():
                    break
                await asyncio.sleep(0.05)
        if watching.done():
            break
        await step(body["run"]["id"])
    seen = await asyncio.wait_for(watching, 90)
    assert seen["before"]["run"].strip() == "queued"
    assert seen["during"]["state"] == "in progress"
    after = seen["after"]
    # The run's column follows the run to its end; the cause and hint come with the verdict.
    assert after["run"] == "failure" and after["verdict"] == "failure"
    assert after["cause"] == "infrastructure" and "SSH" in after["hint"]
    assert after["details"] == f"/deployments/{body['id']}"
    assert after["not_reloaded"]
