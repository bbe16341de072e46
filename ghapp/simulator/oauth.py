"""The App's OAuth web flow (sign in with GitHub): the authorize page that signs in a configured
user, the code exchange with PKCE, `GET /user`, team memberships, and revoking a user token.

GitHub's answers: `/login/oauth/access_token` answers 200 with an `error` field when the code,
client or verifier is wrong; a revoked user token gets `401 Bad credentials`; a non-member's team
membership is `404 Not Found`.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from ghapp.core.signin import verifier_matches
from ghapp.simulator.accounts import user
from ghapp.simulator.http import ApiError, Call, Router, empty_response, json_response
from ghapp.simulator.oauth_state import Grant

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub

AUTH_DOCS = "https://docs.github.com/rest"
CODE_SECONDS = 600


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><main>{body}</main></body></html>")
    return web.Response(text=text, status=status, content_type="text/html")


def _user_of(sim: SimulatedGitHub, call: Call) -> str:
    header = call.request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    login = sim.oauth.tokens.get(value.strip()) if scheme.lower() in ("token", "bearer") else None
    if login is None:
        raise ApiError(401, "Bad credentials", AUTH_DOCS)
    return login


async def _form(call: Call) -> dict[str, Any]:
    raw = (await call.request.read()).decode("utf-8", "replace")
    if call.request.content_type == "application/json":
        return await call.body()
    return dict(parse_qsl(raw))


def register(router: Router, sim: SimulatedGitHub) -> None:
    """Add the OAuth web flow's routes and the user endpoints."""
    oauth = sim.oauth

    @router.route("GET", "/login/oauth/authorize", auth="none")
    async def authorize(call: Call) -> web.StreamResponse:
        q = call.request.query
        if q.get("client_id") != sim.client_id:
            return _page("Not found", "<p>The application was not found.</p>", 404)
        if oauth.login is None:
            return _page("Sign in", "<p>No user is configured to sign in.</p>", 403)
        action = "/login/oauth/authorize?" + urlencode(dict(q))
        return _page(
            "Authorize application",
            f"<h1>Authorize {html.escape(sim.world.app_name)}</h1>"
            f"<p>Signed in as <strong id='login'>{html.escape(oauth.login)}</strong></p>"
            f"<form method='post' action='{html.escape(action)}'>"
            "<button id='authorize' type='submit'>Authorize</button></form>",
        )

    @router.route("POST", "/login/oauth/authorize", auth="none")
    async def approve(call: Call) -> web.StreamResponse:
        q = call.request.query
        redirect_uri, state = q.get("redirect_uri", ""), q.get("state", "")
        if q.get("client_id") != sim.client_id or oauth.login is None or not redirect_uri:
            return _page("Error", "<p>The request was refused.</p>", 400)
        code = secrets.token_hex(10)
        oauth.codes[code] = Grant(oauth.login, redirect_uri, q.get("code_challenge", ""),
                                  q.get("code_challenge_method", "plain"),
                                  time.monotonic() + CODE_SECONDS)
        query = urlencode({"code": code, "state": state})
        separator = "&" if "?" in redirect_uri else "?"
        return web.Response(status=302, headers={"Location": f"{redirect_uri}{separator}{query}"})

    def refuse(error: str, description: str) -> web.Response:
        oauth.refusals += 1
        return json_response({"error": error, "error_description": description,
                              "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
                                           "troubleshooting-oauth-app-access-token-request-errors"})

    @router.route("POST", "/login/oauth/access_token", auth="none")
    async def access_token(call: Call) -> web.StreamResponse:
        form = {**dict(call.request.query), **await _form(call)}
        if form.get("client_id") != sim.client_id or form.get("client_secret") != sim.client_secret:
            return refuse("incorrect_client_credentials",
                          "The client_id and/or client_secret passed are incorrect.")
        # Single use: a code is gone once presented, whatever the outcome.
        grant = oauth.codes.pop(str(form.get("code", "")), None)
        if grant is None or grant.expires < time.monotonic():
            return refuse("bad_verification_code", "The code passed is incorrect or expired.")
        if form.get("redirect_uri") and form["redirect_uri"] != grant.redirect_uri:
            return refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered "
                                                   "callback URL for this application.")
        if grant.challenge and (grant.method != "S256" or not verifier_matches(
                str(form.get("code_verifier", "")), grant.challenge)):
            return refuse("invalid_grant", "The code_verifier does not match the code_challenge.")
        token = "ghu_" + secrets.token_hex(18)
        oauth.tokens[token] = grant.login
        oauth.exchanges += 1
        data = {"access_token": token, "token_type": "bearer", "scope": ""}
        if "json" in call.request.headers.get("Accept", ""):
            return json_response(data)
        return web.Response(text=urlencode(data), content_type="application/x-www-form-urlencoded")

    @router.route("GET", "/user", auth="none")
    async def get_user(call: Call) -> web.StreamResponse:
        login = _user_of(sim, call)
        return json_response({**user(sim.world, login), "name": login})

    @router.route("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}", auth="none")
    async def membership(call: Call) -> web.StreamResponse:
        _user_of(sim, call)
        org, slug, login = call.params["org"], call.params["team_slug"], call.params["username"]
        if not oauth.is_member(f"{org}/{slug}", login):
            raise ApiError(404, "Not Found", AUTH_DOCS)
        api = sim.world.api_url
        return json_response({"url": f"{api}/teams/1/memberships/{login}",
                              "role": "member", "state": "active"})

    @router.route("DELETE", "/applications/{client_id}/token", auth="none")
    async def revoke(call: Call) -> web.StreamResponse:
        scheme, _, value = call.request.headers.get("Authorization", "").partition(" ")
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            pair = ""
        if scheme.lower() != "basic" or pair != f"{sim.client_id}:{sim.client_secret}":
            raise ApiError(401, "Bad credentials", AUTH_DOCS)
        if call.params["client_id"] != sim.client_id:
            raise ApiError(404, "Not Found", AUTH_DOCS)
        body = await call.body()
        login = oauth.tokens.pop(str(body.get("access_token", "")), None)
        if login is None:
            raise ApiError(404, "Not Found", AUTH_DOCS)
        return empty_response(204)
