"""The simulator's OAuth web flow: authorize page, code exchange with PKCE, /user, team membership,
revoking a user token."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from ghapp.core import signin
from ghapp.simulator import Simulator

REDIRECT = "http://127.0.0.1:9/auth/github/callback"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator()
    await simulator.start()
    simulator.oauth.login = "octocat"
    simulator.oauth.add_member("acme/ops", "octocat")
    yield simulator
    await simulator.stop()


async def _code(http: aiohttp.ClientSession, sim: Simulator, verifier: str, state: str) -> str:
    query = {"client_id": sim.client_id, "redirect_uri": REDIRECT, "state": state,
             "code_challenge": signin.challenge(verifier), "code_challenge_method": "S256"}
    async with http.get(f"{sim.api_url}/login/oauth/authorize", params=query) as page:
        assert page.status == 200
        assert "octocat" in await page.text()
    async with http.post(f"{sim.api_url}/login/oauth/authorize", params=query,
                         allow_redirects=False) as approved:
        assert approved.status == 302
        location = urlsplit(approved.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    back = parse_qs(location.query)
    assert back["state"] == [state]
    return back["code"][0]


async def _exchange(http: aiohttp.ClientSession, sim: Simulator, code: str, verifier: str,
                    secret: str | None = None) -> dict[str, str]:
    form = {"client_id": sim.client_id, "client_secret": secret or sim.client_secret,
            "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
    async with http.post(f"{sim.api_url}/login/oauth/access_token", data=form,
                         headers={"Accept": "application/json"}) as answer:
        assert answer.status == 200
        data: dict[str, str] = await answer.json(content_type=None)
        return data


async def test_the_flow_signs_in_the_configured_user_and_reads_teams(sim: Simulator) -> None:
    verifier = signin.new_verifier()
    async with aiohttp.ClientSession() as http:
        code = await _code(http, sim, verifier, "s1")
        token = (await _exchange(http, sim, code, verifier))["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{sim.api_url}/user", headers=auth) as me:
            assert (me.status, (await me.json())["login"]) == (200, "octocat")
        member = f"{sim.api_url}/orgs/acme/teams/ops/memberships/octocat"
        async with http.get(member, headers=auth) as found:
            assert (found.status, (await found.json())["state"]) == (200, "active")
        sim.oauth.remove_member("acme/ops", "octocat")
        async with http.get(member, headers=auth) as gone:
            assert gone.status == 404
        # Revoked: GitHub refuses the token from then on.
        assert sim.oauth.revoke("octocat") == 1
        async with http.get(f"{sim.api_url}/user", headers=auth) as refused:
            assert refused.status == 401


async def test_a_code_is_single_use_and_needs_the_verifier_and_the_secret(sim: Simulator) -> None:
    verifier = signin.new_verifier()
    async with aiohttp.ClientSession() as http:
        code = await _code(http, sim, verifier, "s2")
        wrong = await _exchange(http, sim, code, signin.new_verifier())
        assert wrong["error"] == "invalid_grant"
        # The refused attempt used the code up.
        again = await _exchange(http, sim, code, verifier)
        assert again["error"] == "bad_verification_code"
        code = await _code(http, sim, verifier, "s3")
        assert (await _exchange(http, sim, code, verifier, "nope"))["error"] == (
            "incorrect_client_credentials")
        code = await _code(http, sim, verifier, "s4")
        assert "access_token" in await _exchange(http, sim, code, verifier)
        replay = await _exchange(http, sim, code, verifier)
        assert replay["error"] == "bad_verification_code"
        # Revoking through the API, as ghapp does on sign-out.
        token = next(iter(sim.oauth.tokens))
        url = f"{sim.api_url}/applications/{sim.client_id}/token"
        pair = base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
        async with http.delete(url, json={"access_token": token},
                               headers={"Authorization": f"Basic {pair}"}) as revoked:
            assert revoked.status == 204
        assert token not in sim.oauth.tokens
