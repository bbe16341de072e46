"""`ghapp setup`: create the GitHub App from `manifest/app.yml` and write its settings to `.env`.

GitHub's manifest flow: a form posts the manifest (JSON in the field `manifest`) to
`{github}/settings/apps/new?state=...`; the person confirms on GitHub, which redirects the browser
to the manifest's `redirect_url` with `?code=...&state=...`; the code is exchanged, without any
credentials, at `POST {api}/app-manifests/{code}/conversions` for the App's id, key and secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import html
import json
import os
import secrets
import sys
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from ghapp.cli.common import CommandError, fail
from ghapp.cli.envfile import file_mode, read_env_file, update_env_file, write_secret_file
from ghapp.cli.manifest import for_setup, load_manifest
from ghapp.cli.setup_settings import CLIENT_NOTE, ask_callback_url, server_values

DEFAULT_API = "https://api.github.com"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ghapp setup</title>
<style>body{{font:16px system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}
button{{font-size:1.1em;padding:.5em 1em}} input[type=url]{{width:100%;font-size:1em}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1>ghapp setup</h1>{body}</body></html>
"""


@dataclass
class SetupOptions:
    """What `ghapp setup` was asked to do."""

    env_file: Path = Path(".env")
    webhook_url: str | None = None
    org: str | None = None
    port: int = 3001
    github_url: str = "https://github.com"
    api_url: str | None = None
    name: str | None = None
    manifest: Path | None = None
    callback_url: str | None = None
    # ghapp's address as browsers reach it (PUBLIC_URL); default: the webhook URL's origin.
    public_url: str | None = None


@dataclass
class SetupResult:
    """The App GitHub created, and what was written where."""

    app: dict[str, Any]
    env_file: Path
    key_file: Path
    written: list[str] = field(default_factory=list)
    # ORCHESTRATOR_TOKEN / CALLBACK_SECRET made by this run (they were set nowhere).
    generated: list[str] = field(default_factory=list)
    # The env file's mode before, when this run made it 0600.
    old_mode: int | None = None
    # What ORCHESTRATOR_CALLBACK_URL is now (given, or already set), None if unset.
    callback_url: str | None = None
    # Settings kept as they were that `ghapp serve` would refuse.
    warnings: list[str] = field(default_factory=list)


def api_url_for(github_url: str) -> str:
    """The REST API of a GitHub web URL: api.github.com, or GHES's `/api/v3`."""
    host = (urlsplit(github_url).hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        return DEFAULT_API
    return github_url.rstrip("/") + "/api/v3"


def _check_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"{what}: {value!r} is not an http(s) URL", 2)
    return value.rstrip("/")


class SetupServer:
    """The local page and callback of the manifest flow, on 127.0.0.1."""

    def __init__(self, options: SetupOptions) -> None:
        self.options = options
        self.github_url = _check_url(options.github_url, "--github-url")
        self.api_url = _check_url(options.api_url or api_url_for(self.github_url), "--api-url")
        if options.webhook_url:
            _check_url(options.webhook_url, "--webhook-url")
        try:
            self.manifest = load_manifest(options.manifest)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--manifest: {exc}", 2) from None
        if options.public_url:
            _check_url(options.public_url, "--public-url")
        self.state = secrets.token_urlsafe(24)
        self.base_url = ""
        self.public_url = (options.public_url or "").rstrip("/")
        self._done: asyncio.Future[SetupResult] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Serve the page; returns its URL."""
        self._done = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/manifest", self._manifest_page)
        app.router.add_get("/callback", self._callback)
        # A short grace period: the success page must reach the browser before the exit.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            message = f"--port {self.options.port}: cannot listen ({exc.strerror})"
            raise CommandError(message) from None
        port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def wait(self) -> SetupResult:
        """Wait until the App is created and the files are written."""
        assert self._done is not None
        return await self._done

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- pages -------------------------------------------------------------------------

    def form_action(self) -> str:
        """Where the manifest form posts: the account's or the organisation's new-App page."""
        if self.options.org:
            path = f"/organizations/{quote(self.options.org, safe='')}/settings/apps/new"
        else:
            path = "/settings/apps/new"
        return f"{self.github_url}{path}?state={quote(self.state)}"

    def _github_form(self, webhook_url: str) -> web.Response:
        manifest = for_setup(
            self.manifest,
            webhook_url=webhook_url,
            redirect_url=f"{self.base_url}/callback",
            name=self.options.name,
            public_url=self.options.public_url,
        )
        if not self.public_url:
            parts = urlsplit(webhook_url)
            self.public_url = f"{parts.scheme}://{parts.netloc}"
        owner = f"the organisation {self.options.org}" if self.options.org else "your account"
        body = f"""<p>This creates a GitHub App for {html.escape(owner)} on
<code>{html.escape(self.github_url)}</code>, with the permissions and events of
<code>manifest/app.yml</code>. Webhooks will go to <code>{html.escape(webhook_url)}</code>.</p>
<p>GitHub shows the App before creating it; you can rename it there.</p>
<form action="{html.escape(self.form_action())}" method="post">
<input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">
<button type="submit">Create the GitHub App</button>
</form>"""
        return web.Response(text=PAGE.format(body=body), content_type="text/html")

    async def _index(self, _request: web.Request) -> web.Response:
        if self.options.webhook_url:
            return self._github_form(self.options.webhook_url)
        body = """<p>Where will GitHub send webhooks? The public URL of this server's
<code>WEBHOOK_PATH</code>, e.g. <code>https://ghapp.example.com/api/github/webhooks</code>
(a <a href="https://smee.io">smee.io</a> channel works while developing).</p>
<form action="/manifest" method="post">
<input type="url" name="webhook_url" required placeholder="https://.../api/github/webhooks">
<p><button type="submit">Next</button></p></form>"""
        return web.Response(text=PAGE.format(body=body), content_type="text/html")

    async def _manifest_page(self, request: web.Request) -> web.Response:
        form = await request.post()
        webhook_url = str(form.get("webhook_url") or "")
        try:
            webhook_url = _check_url(webhook_url, "webhook URL")
        except CommandError as exc:
            return self._message(400, str(exc))
        return self._github_form(webhook_url)

    def _message(self, status: int, text: str) -> web.Response:
        body = f"<p>{html.escape(text)}</p>"
        return web.Response(status=status, text=PAGE.format(body=body), content_type="text/html")

    async def _callback(self, request: web.Request) -> web.Response:
        assert self._done is not None
        state = request.query.get("state", "")
        code = request.query.get("code", "")
        # A stale tab or a forged link must not create the settings: the state is this run's.
        if not hmac.compare_digest(state.encode(), self.state.encode()):
            return self._message(400, "This link is not from this run of `ghapp setup` (state).")
        if not code or self._done.done():
            return self._message(400, "No code, or the App was already created by this run.")
        try:
            result = await self._convert(code)
        except CommandError as exc:
            if not self._done.done():
                self._done.set_exception(exc)
            return self._message(502, str(exc))
        self._done.set_result(result)
        install = f"{result.app.get('html_url', '')}/installations/new"
        body = f"""<p>Created the GitHub App <b>{html.escape(str(result.app.get("name")))}</b>
and wrote its settings to <code>{html.escape(str(result.env_file))}</code>.</p>
<p>Next: <a href="{html.escape(install)}">install it on the repositories to deploy</a>.
You can close this tab.</p>"""
        return web.Response(text=PAGE.format(body=body), content_type="text/html")

    async def _convert(self, code: str) -> SetupResult:
        url = f"{self.api_url}/app-manifests/{quote(code, safe='')}/conversions"
        headers = {"Accept": "application/vnd.github+json", "User-Agent": "ghapp-setup"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.post(url, headers=headers) as response,
            ):
                text = await response.text()
                if response.status != 201:
                    raise CommandError(
                        f"GitHub refused the conversion ({response.status}): {text[:300]}"
                    )
                app: dict[str, Any] = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CommandError(f"the conversion at {url} failed: {exc!r}") from None
        return self._write(app)

    def _write(self, app: dict[str, Any]) -> SetupResult:
        env_file = self.options.env_file.resolve()
        env_file.parent.mkdir(parents=True, exist_ok=True)
        slug = str(app.get("slug") or f"app-{app['id']}")
        key_file = env_file.parent / f"{slug}.private-key.pem"
        write_secret_file(key_file, str(app["pem"]))
        values = {
            "APP_ID": str(app["id"]),
            "PRIVATE_KEY_PATH": str(key_file),
            "WEBHOOK_SECRET": str(app.get("webhook_secret") or ""),
            "GITHUB_CLIENT_ID": str(app.get("client_id") or ""),
            "GITHUB_CLIENT_SECRET": str(app.get("client_secret") or ""),
        }
        if self.api_url != DEFAULT_API:
            values["GITHUB_API_URL"] = self.api_url
        if self.public_url:
            # Sign in with GitHub's callback host (PAGE_AUTH=github; docs/signin.md).
            values["PUBLIC_URL"] = self.public_url
        existing = read_env_file(env_file)
        extra, generated, warnings = server_values(
            existing, os.environ, self.options.callback_url
        )
        values.update(extra)
        old_mode = file_mode(env_file)
        # An inline PRIVATE_KEY would win over PRIVATE_KEY_PATH and keep the old App's key.
        written = update_env_file(
            env_file,
            values,
            comment_out=["PRIVATE_KEY"],
            header=f"GitHub App {app.get('name')} ({app.get('html_url')}), by ghapp setup",
            notes={"GITHUB_CLIENT_ID": CLIENT_NOTE},
            # It holds secrets: readable by its owner only, whatever it was.
            mode=0o600,
        )
        return SetupResult(
            app=app,
            env_file=env_file,
            key_file=key_file,
            written=written,
            generated=generated,
            old_mode=old_mode if old_mode not in (None, 0o600) else None,
            callback_url=self.options.callback_url or existing.get("ORCHESTRATOR_CALLBACK_URL"),
            warnings=warnings,
        )


def print_result(result: SetupResult) -> None:
    """What was created and written, and what to do next."""
    app = result.app
    env = result.env_file
    print(f"Created the GitHub App {app.get('name')} (id {app.get('id')}): {app.get('html_url')}")
    print(f"Saved its private key to {result.key_file} (mode 0600).")
    print(f"Wrote {', '.join(result.written)} to {env} (other lines kept).")
    if result.old_mode is not None:
        print(
            f"Changed {env}'s mode from {result.old_mode:04o} to 0600 (readable by its owner "
            "only): it holds secrets."
        )
    if result.generated:
        what = {
            "ORCHESTRATOR_TOKEN": "the bearer token the orchestrator presents",
            "CALLBACK_SECRET": "the key the orchestrator checks callbacks' signatures with",
        }
        named = " and ".join(f"{name} ({what[name]})" for name in result.generated)
        both = "both" if len(result.generated) > 1 else "it"
        print(f"Generated {named}: give {both} to the orchestrator.")
    for warning in result.warnings:
        print(f"Warning: {warning}.")
    print(
        "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are the App's OAuth client: ghapp uses them "
        "only for signing in to the operator page with GitHub (PAGE_AUTH=github); keep the "
        "secret as secret as the rest."
    )
    print()
    print("Next steps:")
    install = f"{app.get('html_url')}/installations/new"
    print(f"  1. Install the App on the repositories to deploy: {install}")
    print("  2. Add the workflow to each: ghapp template deploy > .github/workflows/deploy.yml")
    print("  3. Give the deploy a server key: ghapp deploy-key OWNER/REPO")
    if result.callback_url:
        print(f"  4. Verdicts go to ORCHESTRATOR_CALLBACK_URL={result.callback_url}")
    else:
        print(
            f"  4. Set ORCHESTRATOR_CALLBACK_URL in {env} to the orchestrator's callback URL: "
            "until then every deploy request without a callback_url is refused"
        )
    print("  5. Start the server (ghapp serve), then check a repository: ghapp check OWNER/REPO")


async def run_setup(options: SetupOptions, *, open_browser: bool = False) -> SetupResult:
    """Serve the page until GitHub's redirect arrives and the settings are written."""
    server = SetupServer(options)
    url = await server.start()
    print(f"Open {url}/ in a browser to create the GitHub App (Ctrl-C to give up).", flush=True)
    if open_browser:
        webbrowser.open(url + "/")
    try:
        return await server.wait()
    finally:
        await server.stop()


def run(args: argparse.Namespace) -> int:
    """Run `ghapp setup`."""
    env_file = Path(args.env_file)
    callback_url = args.callback_url
    try:
        if callback_url is not None:
            callback_url = _check_url(callback_url, "--callback-url")
    except CommandError as exc:
        return fail(str(exc), exc.code)
    already = read_env_file(env_file).get("ORCHESTRATOR_CALLBACK_URL")
    if callback_url is None and not already and sys.stdin.isatty():
        callback_url = ask_callback_url()
    options = SetupOptions(
        env_file=env_file,
        callback_url=callback_url,
        webhook_url=args.webhook_url,
        org=args.org,
        port=args.port,
        github_url=args.github_url,
        api_url=args.api_url,
        name=args.name,
        manifest=Path(args.manifest) if args.manifest else None,
        public_url=getattr(args, "public_url", None),
    )
    try:
        result = asyncio.run(run_setup(options, open_browser=args.open))
    except CommandError as exc:
        return fail(str(exc), exc.code)
    print_result(result)
    return 0
