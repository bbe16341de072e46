"""The GitHub simulator, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jsonschema import Draft202012Validator, FormatChecker
from nacl.public import PublicKey, SealedBox

from ghapp.simulator import Annotation, Job, Simulator, Step, Workflow
from ghapp.simulator.auth import generate_private_key_pem
from ghapp.simulator.stack import Stack

REFERENCE = Path(
    os.environ.get("GHAPP_REFERENCE") or Path(__file__).parents[2] / "shared" / "github-reference"
)
KEY = generate_private_key_pem()
OTHER_KEY = generate_private_key_pem()
SECRET = "s3cret"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z) (.*)$")


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Received:
    """A webhook the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def name(self) -> str:
        action = self.payload.get("action")
        event = self.headers["X-GitHub-Event"]
        return f"{event}.{action}" if action else event


@dataclass
class Receiver:
    """A small App stand-in that records webhooks and answers ``status``."""

    url: str = ""
    status: int = 200
    got: list[Received] = field(default_factory=list)

    def names(self, prefix: str = "") -> list[str]:
        return [r.name for r in self.got if r.name.startswith(prefix)]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        rec.got.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=rec.status, text="ok")

    app = web.Application()
    app.router.add_post("/api/github/webhooks", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/github/webhooks"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[Simulator]:
    simulator = Simulator(app_id=1234, private_key_pem=KEY, webhook_secret=SECRET,
                          webhook_url=receiver.url)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def deploy_workflow(*, fail: bool = False, **kwargs: Any) -> Workflow:
    """The deploy.yml script of the brief: checkout, then SSH deploy (failing when asked)."""
    deploy = Step("Deploy over SSH", fail=fail, error="Process completed with exit code 255.",
                  output=["Connecting to 203.0.113.7",
                          "ssh: connect to host 203.0.113.7 port 22: Connection refused"],
                  command="./deploy.sh", annotations=[Annotation("Node 16 is deprecated")])
    job = Job(name="deploy", environment="production",
              environment_url="https://shop.example.com",
              steps=[Step("Set up job"), Step("Run actions/checkout@v4"), deploy,
                     Step("Announce", command="echo done")])
    kwargs.setdefault("file", "deploy.yml")
    return Workflow(name="Deploy", jobs=[job], **kwargs)


class Api:
    """Authenticated helpers around one session."""

    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http
        self.token = ""

    @property
    def jwt_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sim.make_jwt()}"}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def login(self, installation_id: int) -> str:
        url = f"{self.sim.api_url}/app/installations/{installation_id}/access_tokens"
        async with self.http.post(url, headers=self.jwt_headers) as r:
            assert r.status == 201, await r.text()
            self.token = (await r.json())["token"]
        return self.token

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        async with self.http.get(self.sim.api_url + path, headers=headers, **kwargs) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None), r.headers

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        async with self.http.post(self.sim.api_url + path, json=body, headers=headers,
                                  **kwargs) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None), r.headers

    async def dispatch(self, repo: str = "acme/shop", wf: str = "deploy.yml",
                       body: dict[str, Any] | None = None,
                       version: bool = True) -> tuple[int, Any, Any]:
        headers = {"X-GitHub-Api-Version": "2026-03-10"} if version else {}
        return await self.post(f"/repos/{repo}/actions/workflows/{wf}/dispatches",
                               body or {"ref": "main", "inputs": {"ghapp_id": "dep_1"}},
                               headers=headers)


async def ready(sim: Simulator, http: aiohttp.ClientSession, **wf: Any) -> Api:
    repo = sim.add_repository("acme/shop")
    repo.add_workflow(deploy_workflow(**wf))
    api = Api(sim, http)
    await api.login(repo.installation_id)
    return api


# -- auth -------------------------------------------------------------------------------------


def sign_raw_jwt(claims: dict[str, Any], key: str) -> str:
    """An RS256 JWT with any claims (PyJWT refuses to encode an integer ``iss``)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    private = serialization.load_pem_private_key(key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


async def test_app_jwt_accepted_and_refused(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async def get_app(token: str) -> tuple[int, Any]:
        async with http.get(f"{sim.api_url}/app",
                            headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()

    status, body = await get_app(sim.make_jwt())
    assert status == 200 and body["id"] == 1234 and body["slug"] == "ghapp-sim"
    now = int(time.time())
    as_int = sign_raw_jwt({"iat": now - 60, "exp": now + 540, "iss": 1234}, KEY)
    assert (await get_app(as_int))[0] == 200
    wrong_key = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": "1234"}, OTHER_KEY,
                           algorithm="RS256")
    expired = sim.make_jwt(now=time.time() - 1200)
    too_long = jwt.encode({"iat": now, "exp": now + 1200, "iss": "1234"}, KEY, algorithm="RS256")
    other_app = jwt.encode({"iat": now, "exp": now + 500, "iss": "99"}, KEY, algorithm="RS256")
    for bad in (wrong_key, expired, too_long, other_app, "not.a.jwt"):
        status, body = await get_app(bad)
        assert status == 401
        assert body["message"] == "A JSON web token could not be decoded"
        assert body["documentation_url"].startswith("https://docs.github.com/")
    async with http.get(f"{sim.api_url}/app") as r:
        assert r.status == 401


async def test_installation_token_flow(sim: Simulator, http: aiohttp.ClientSession) -> None:
    repo = sim.add_repository("acme/shop")
    api = Api(sim, http)
    url = f"{sim.api_url}/app/installations/{repo.installation_id}/access_tokens"
    async with http.post(url, headers=api.jwt_headers) as r:
        assert r.status == 201
        body = await r.json()
    assert re.fullmatch(r"ghs_[A-Za-z0-9]{36}", body["token"])
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert abs(expires - (time.time() + 3600)) < 5
    assert body["repository_selection"] == "all" and body["permissions"]["actions"] == "write"
    api.token = body["token"]
    status, data, _ = await api.get("/repos/acme/shop")
    assert status == 200 and data["default_branch"] == "main" and data["full_name"] == "acme/shop"
    bearer = {"Authorization": f"Bearer {api.token}"}
    assert (await api.get("/repos/acme/shop", headers=bearer))[0] == 200
    status, data, _ = await api.get("/repos/acme/shop/installation", headers=api.jwt_headers)
    assert status == 200 and data["id"] == repo.installation_id and data["app_id"] == 1234
    assert (await api.get("/repos/acme/nope/installation", headers=api.jwt_headers))[0] == 404
    async with http.post(f"{sim.api_url}/app/installations/999/access_tokens",
                         headers=api.jwt_headers) as r:
        assert r.status == 404
    # A token cannot authenticate as the App, nor a JWT as an installation.
    assert (await api.get("/app"))[0] == 401
    status, data, _ = await api.get("/repos/acme/shop", headers=api.jwt_headers)
    assert status == 401 and data["message"] == "Bad credentials"
    sim.revoke_tokens()
    status, data, _ = await api.get("/repos/acme/shop")
    assert status == 401 and data["message"] == "Bad credentials"
    sim.token_ttl = 0.2
    await api.login(repo.installation_id)
    assert (await api.get("/repos/acme/shop"))[0] == 200
    await asyncio.sleep(0.3)
    assert (await api.get("/repos/acme/shop"))[0] == 401


async def test_token_for_another_installation_is_refused(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    shop = sim.add_repository("acme/shop")
    other = sim.add_repository("globex/site")
    assert shop.installation_id != other.installation_id
    assert sim.add_repository("acme/api").installation_id == shop.installation_id
    api = Api(sim, http)
    await api.login(shop.installation_id)
    assert (await api.get("/repos/acme/api"))[0] == 200
    status, data, _ = await api.get("/repos/globex/site")
    assert status == 401 and data["message"] == "Bad credentials"
    # A token narrowed to some repositories reaches only those.
    url = f"{sim.api_url}/app/installations/{shop.installation_id}/access_tokens"
    async with http.post(url, headers=api.jwt_headers, json={"repositories": ["shop"]}) as r:
        api.token = (await r.json())["token"]
    assert (await api.get("/repos/acme/shop"))[0] == 200
    assert (await api.get("/repos/acme/api"))[0] == 401


# -- runs and webhooks ------------------------------------------------------------------------


def verify(received: Received) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["X-Hub-Signature-256"])


SUCCESS_SEQUENCE = [
    "workflow_run.requested",
    "workflow_job.queued",
    "workflow_run.in_progress",
    "workflow_job.in_progress",
    "deployment_status.created",
    "deployment_status.created",
    "workflow_job.completed",
    "workflow_run.completed",
]


async def test_dispatch_runs_to_completion_with_signed_webhooks(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http)
    status, body, _ = await api.dispatch()
    assert status == 200
    run_id = body["workflow_run_id"]
    assert run_id >= 10_000_000_001
    assert body["html_url"] == f"https://github.com/acme/shop/actions/runs/{run_id}"
    assert body["run_url"] == f"{sim.api_url}/repos/acme/shop/actions/runs/{run_id}"
    run = await sim.wait_for_run(run_id)
    assert run.conclusion == "success" and run.display_title == "Deploy dep_1"
    assert receiver.names() == SUCCESS_SEQUENCE
    guids = set()
    for got in receiver.got:
        assert verify(got)
        assert got.headers["User-Agent"].startswith("GitHub-Hookshot/")
        assert got.headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
        assert got.headers["X-GitHub-Hook-Installation-Target-ID"] == "1234"
        assert got.headers["X-Hub-Signature"].startswith("sha1=")
        guids.add(str(uuid.UUID(got.headers["X-GitHub-Delivery"])))
        payload = got.payload
        assert payload["installation"]["id"] == sim.repos["acme/shop"].installation_id
        assert payload["repository"]["full_name"] == "acme/shop"
        assert payload["organization"]["login"] == "acme"
        assert b": " not in got.body  # compact JSON like GitHub's
    assert len(guids) == len(receiver.got)
    first, last = receiver.got[0].payload, receiver.got[-1].payload
    assert first["workflow_run"]["status"] == "queued"
    assert first["workflow_run"]["display_title"] == "Deploy dep_1"
    assert last["workflow_run"]["status"] == "completed"
    assert last["workflow_run"]["conclusion"] == "success"
    statuses = [g.payload for g in receiver.got if g.name == "deployment_status.created"]
    assert [s["deployment_status"]["state"] for s in statuses] == ["in_progress", "success"]
    assert statuses[1]["deployment_status"]["environment_url"] == "https://shop.example.com"
    assert statuses[1]["workflow_run"]["id"] == run_id
    assert statuses[1]["deployment"]["sha"] == run.head_sha
    status, data, _ = await api.get(f"/repos/acme/shop/actions/runs/{run_id}")
    assert data["status"] == "completed" and data["event"] == "workflow_dispatch"
    assert data["path"] == ".github/workflows/deploy.yml" and data["head_branch"] == "main"
    assert re.fullmatch(r"[0-9a-f]{40}", data["head_sha"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["created_at"])
    assert sim.deliveries[-1].status == 200 and all(d.ok for d in sim.deliveries)


async def test_failing_step_fails_job_and_run(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http, fail=True)
    _, body, _ = await api.dispatch()
    run = await sim.wait_for_run(body["workflow_run_id"])
    assert run.conclusion == "failure"
    status, data, _ = await api.get(f"/repos/acme/shop/actions/runs/{run.id}/jobs")
    assert status == 200 and data["total_count"] == 1
    job = data["jobs"][0]
    assert job["conclusion"] == "failure" and job["status"] == "completed"
    assert job["html_url"] == f"https://github.com/acme/shop/actions/runs/{run.id}/job/{job['id']}"
    assert job["check_run_url"] == f"{sim.api_url}/repos/acme/shop/check-runs/{job['id']}"
    steps = {s["name"]: s for s in job["steps"]}
    assert [s["number"] for s in job["steps"]] == [1, 2, 3, 4, 5]
    assert steps["Deploy over SSH"]["conclusion"] == "failure"
    assert steps["Announce"]["conclusion"] == "skipped"
    assert steps["Complete job"]["conclusion"] == "success"
    for step in job["steps"]:
        assert step["started_at"].endswith(".000-07:00")
    assert job["started_at"].endswith("Z") and job["created_at"].endswith("Z")
    status, single, _ = await api.get(f"/repos/acme/shop/actions/jobs/{job['id']}")
    assert status == 200 and single == job
    status, notes, _ = await api.get(f"/repos/acme/shop/check-runs/{job['id']}/annotations")
    assert status == 200
    assert [(n["annotation_level"], n["message"]) for n in notes] == [
        ("warning", "Node 16 is deprecated"),
        ("failure", "Process completed with exit code 255."),
    ]
    assert notes[1]["path"] == ".github" and notes[1]["start_line"] == 1


def parse_log(text: str) -> list[tuple[datetime, str]]:
    assert text.endswith("\r\n") and not text.startswith("\ufeff")
    lines = []
    for raw in text.split("\r\n")[:-1]:
        found = STAMP.match(raw)
        assert found, raw
        lines.append((datetime.fromisoformat(found.group(1)), found.group(2)))
    return lines


async def test_job_logs_redirect_to_signed_url_on_the_log_origin(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http, fail=True)
    _, body, _ = await api.dispatch()
    run = await sim.wait_for_run(body["workflow_run_id"])
    job_id = run.jobs[0].id
    async with http.get(f"{sim.api_url}/repos/acme/shop/actions/jobs/{job_id}/logs",
                        headers=api.headers, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Content-Type"] == "text/html;charset=utf-8"
        assert await r.read() == b""
        location = r.headers["Location"]
    assert location.startswith(f"{sim.log_url}/jobs/{job_id}/signedlogcontent?urlExpires=")
    assert "urlSigningMethod=HMACV1" in location and "urlSignature=" in location
    async with http.get(location) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
        text = await r.text()
    lines = parse_log(text)
    texts = [t for _, t in lines]
    assert "##[group]Runner Image" in texts and "##[group]Run actions/checkout@v4" in texts
    assert "##[group]Run ./deploy.sh" in texts and "##[endgroup]" in texts
    assert "\x1b[36;1m./deploy.sh\x1b[0m" in texts
    assert texts[-1] == "Cleaning up orphan processes"
    error = texts.index("##[error]Process completed with exit code 255.")
    assert texts[error - 1] == "ssh: connect to host 203.0.113.7 port 22: Connection refused"
    assert [t for t in texts if "Announce" in t or "echo done" in t] == []
    times = [when for when, _ in lines]
    assert times == sorted(times)
    # Each step's lines fall inside its API window, so lines can be attributed to steps.
    _, data, _ = await api.get(f"/repos/acme/shop/actions/jobs/{job_id}")
    windows = [(s["name"], datetime.fromisoformat(s["started_at"]),
                datetime.fromisoformat(s["completed_at"])) for s in data["steps"]
               if s["conclusion"] != "skipped"]
    owners = []
    for when, _ in lines:
        inside = [name for name, start, end in windows if start <= when <= end]
        assert len(inside) == 1, when
        owners.append(inside[0])
    assert owners[error] == "Deploy over SSH"
    assert owners[texts.index("##[group]Run actions/checkout@v4")] == "Run actions/checkout@v4"
    assert sim.log_text(job_id) == text
    # The log host refuses credentials, tampered signatures and expired URLs.
    async with http.get(location, headers={"Authorization": f"token {api.token}"}) as r:
        assert r.status == 400
    assert sim.log_auth_violations == 1
    async with http.get(location.replace("urlSignature=", "urlSignature=x")) as r:
        assert r.status == 403 and "AuthenticationFailed" in await r.text()
    sim.log_url_ttl = -1
    async with http.get(f"{sim.api_url}/repos/acme/shop/actions/jobs/{job_id}/logs",
                        headers=api.headers, allow_redirects=False) as r:
        expired = r.headers["Location"]
    async with http.get(expired) as r:
        assert r.status == 403 and "<Code>AuthenticationFailed</Code>" in await r.text()
    assert [r.origin for r in sim.requests].count("logs") == 4


async def test_logs_are_404_until_the_job_completes(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http)
    sim.auto = False
    _, body, _ = await api.dispatch()
    run = sim.runs[body["workflow_run_id"]]
    logs_path = f"/repos/acme/shop/actions/jobs/{run.jobs[0].id}/logs"
    status, data, _ = await api.get(logs_path, allow_redirects=False)
    assert status == 404 and data == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest/reference/actions"
                             "#download-job-logs-for-a-workflow-run",
    }
    await sim.advance(run.id)
    assert run.status == "in_progress" and run.jobs[0].status == "in_progress"
    status, data, _ = await api.get(f"/repos/acme/shop/actions/jobs/{run.jobs[0].id}")
    # A succeeding job is busy in its last scripted step while the run is in progress.
    assert [s["status"] for s in data["steps"]] == [
        "completed", "completed", "completed", "in_progress", "queued"]
    assert data["steps"][3]["completed_at"] is None and data["steps"][4]["started_at"] is None
    assert (await api.get(logs_path, allow_redirects=False))[0] == 404
    await sim.finish(run.id)
    sim.faults.logs_not_ready = 4  # this job has had 2 requests: 2 more answer 404
    codes = [(await api.get(logs_path, allow_redirects=False))[0] for _ in range(3)]
    assert codes == [404, 404, 302]
    assert [r.fault for r in sim.requests if r.path == logs_path] == [
        None, None, "logs_not_ready", "logs_not_ready", None]


async def test_etag_answers_304_until_the_run_changes(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http)
    sim.auto = False
    _, body, _ = await api.dispatch()
    path = f"/repos/acme/shop/actions/runs/{body['workflow_run_id']}"
    status, _, headers = await api.get(path)
    etag, remaining = headers["ETag"], int(headers["x-ratelimit-remaining"])
    async with http.get(sim.api_url + path,
                        headers={**api.headers, "If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b""
        assert int(r.headers["x-ratelimit-remaining"]) == remaining
    await sim.advance(body["workflow_run_id"])
    status, data, headers = await api.get(path, headers={"If-None-Match": etag})
    assert status == 200 and data["status"] == "in_progress" and headers["ETag"] != etag
    assert int(headers["x-ratelimit-remaining"]) == remaining - 1
    for name in ("x-ratelimit-limit", "x-ratelimit-reset", "x-ratelimit-used",
                 "x-github-request-id"):
        assert name in headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"


async def test_dispatch_answers(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    repo = sim.add_repository("acme/shop")
    assert repo is sim.repos["acme/shop"]
    repo.add_workflow(Workflow(file="ci.yml", name="CI", dispatchable=False))
    repo.branches.add("release")
    sim.auto = False
    assert (await api.dispatch(wf="nope.yml"))[0] == 404
    status, data, _ = await api.dispatch(wf="ci.yml")
    assert status == 422 and data["message"] == "Workflow does not have 'workflow_dispatch' trigger"
    status, data, _ = await api.dispatch(body={"ref": "nowhere"})
    assert status == 422 and data["message"] == "No ref found for: nowhere"
    status, data, _ = await api.dispatch(body={"ref": "main", "inputs": {"x": "1"}})
    assert status == 422 and data["message"] == 'Unexpected inputs provided: ["x"]'
    many = {f"i{n}": "v" for n in range(26)}
    assert (await api.dispatch(body={"ref": "main", "inputs": many}))[0] == 422
    status, data, _ = await api.dispatch(body={"ref": "release"}, version=False)
    assert status == 204 and data is None
    status, data, _ = await api.dispatch(body={"ref": "refs/heads/main",
                                               "return_run_details": True}, version=False)
    assert status == 200 and data["workflow_run_id"] > 0
    numeric = repo.workflows["deploy.yml"].id
    assert (await api.dispatch(wf=str(numeric)))[0] == 200
    runs = sorted(sim.runs.values(), key=lambda r: r.id)
    assert [r.head_branch for r in runs] == ["release", "main", "main"]
    assert [r.run_number for r in runs] == [1, 2, 3]
    assert [r.display_title for r in runs] == ["Deploy", "Deploy", "Deploy dep_1"]
    assert runs[0].inputs == {"environment": "production"}


async def test_ghes_mode(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    sim.faults.ghes = True
    status, data, _ = await api.dispatch()
    assert status == 400 and data["message"].startswith("Invalid API version")
    status, data, _ = await api.dispatch(body={"ref": "main", "return_run_details": True},
                                         version=False)
    assert status == 422
    assert data["message"] == 'Invalid request.\n\n"return_run_details" is not a permitted key.'
    started = datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    status, data, _ = await api.dispatch(version=False)
    assert status == 204
    # The old way: find the run by listing, through the /api/v3 prefix GHES uses.
    query = {"event": "workflow_dispatch", "branch": "main", "created": f">={started}"}
    async with http.get(f"{sim.ghes_api_url}/repos/acme/shop/actions/workflows/deploy.yml/runs",
                        params=query, headers=api.headers) as r:
        assert r.status == 200
        found = await r.json()
    assert found["total_count"] == 1
    assert "dep_1" in found["workflow_runs"][0]["display_title"]


async def test_contents_serve_the_workflow_file(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http)
    sim.repos["acme/shop"].add_workflow(Workflow(file="plain.yml", name="Plain",
                                                 declares_ghapp_id=False))
    status, data, _ = await api.get("/repos/acme/shop/contents/.github/workflows/deploy.yml",
                                    params={"ref": "main"})
    assert status == 200 and data["type"] == "file" and data["encoding"] == "base64"
    assert data["path"] == ".github/workflows/deploy.yml" and len(data["sha"]) == 40
    parsed = yaml.safe_load(base64.b64decode(data["content"]))
    trigger = parsed[True]["workflow_dispatch"]  # YAML 1.1 reads the key `on` as True
    assert set(trigger["inputs"]) == {"environment", "version", "ghapp_id"}
    assert "inputs.ghapp_id" in parsed["run-name"]
    assert parsed["jobs"]["deploy"]["environment"]["url"] == "https://shop.example.com"
    _, plain, _ = await api.get("/repos/acme/shop/contents/.github/workflows/plain.yml")
    parsed = yaml.safe_load(base64.b64decode(plain["content"]))
    assert "ghapp_id" not in parsed[True]["workflow_dispatch"]["inputs"]
    assert (await api.get("/repos/acme/shop/contents/.github/workflows/x.yml"))[0] == 404
    status, data, _ = await api.get("/repos/acme/shop/contents/.github/workflows/deploy.yml",
                                    params={"ref": "nope"})
    assert status == 404 and data["message"] == "No commit found for the ref nope"


async def test_runs_list_filters_and_pages(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http, fail=True)
    sim.repos["acme/shop"].branches.add("dev")
    sim.auto = False
    ids = [(await api.dispatch(body={"ref": ref}))[1]["workflow_run_id"]
           for ref in ("main", "dev", "main")]
    await sim.finish(ids[0])
    _, data, headers = await api.get("/repos/acme/shop/actions/runs", params={"per_page": "2"})
    assert data["total_count"] == 3
    assert [r["id"] for r in data["workflow_runs"]] == [ids[2], ids[1]]
    assert 'rel="next"' in headers["Link"] and "page=2" in headers["Link"]
    _, data, _ = await api.get("/repos/acme/shop/actions/runs",
                               params={"per_page": "2", "page": "2"})
    assert [r["id"] for r in data["workflow_runs"]] == [ids[0]]
    _, data, _ = await api.get("/repos/acme/shop/actions/runs", params={"branch": "dev"})
    assert [r["id"] for r in data["workflow_runs"]] == [ids[1]]
    _, data, _ = await api.get("/repos/acme/shop/actions/runs", params={"status": "failure"})
    assert [r["id"] for r in data["workflow_runs"]] == [ids[0]]
    _, data, _ = await api.get("/repos/acme/shop/actions/runs", params={"status": "queued"})
    assert data["total_count"] == 2
    _, data, _ = await api.get("/repos/acme/shop/actions/runs", params={"event": "push"})
    assert data["total_count"] == 0
    for created, count in ((">=2020-01-01T00:00:00Z", 3), (">=2100-01-01T00:00:00Z", 0),
                           ("<2020-01-01", 0), ("2020-01-01..*", 3)):
        _, data, _ = await api.get("/repos/acme/shop/actions/runs", params={"created": created})
        assert data["total_count"] == count, created


async def test_cancel_run_over_the_api(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http, fail=True)
    sim.auto = False
    _, body, _ = await api.dispatch()
    run_id = body["workflow_run_id"]
    await sim.advance(run_id)
    status, data, _ = await api.post(f"/repos/acme/shop/actions/runs/{run_id}/cancel")
    assert status == 202 and data == {}
    run = await sim.wait_for_run(run_id)
    assert run.conclusion == "cancelled" and run.jobs[0].conclusion == "cancelled"
    steps = {s.name: s.conclusion for s in run.jobs[0].steps}
    assert steps["Deploy over SSH"] == "cancelled" and steps["Announce"] == "skipped"
    texts = [t for _, t in parse_log(sim.log_text(run.jobs[0].id))]
    assert texts[-2:] == ["##[error]The operation was canceled.", "Cleaning up orphan processes"]
    status, data, _ = await api.post(f"/repos/acme/shop/actions/runs/{run_id}/cancel")
    assert status == 409
    # A run cancelled while queued never starts its jobs.
    _, body, _ = await api.dispatch()
    run = await sim.cancel_run(body["workflow_run_id"])
    assert run.conclusion == "cancelled" and run.jobs[0].steps == []


async def test_timed_out_and_cancelled_scripts(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    repo = sim.repos["acme/shop"]
    repo.add_workflow(Workflow(file="slow.yml", name="Slow", timeout=True, timeout_minutes=30))
    repo.add_workflow(Workflow(file="stop.yml", name="Stop", jobs=[
        Job("build", steps=[Step("Compile", command="make", cancelled=True)])]))
    _, body, _ = await api.dispatch(wf="slow.yml", body={"ref": "main"})
    run = await sim.wait_for_run(body["workflow_run_id"])
    assert run.conclusion == "timed_out" and run.jobs[0].conclusion == "timed_out"
    text = sim.log_text(run.jobs[0].id)
    assert re.search(r"##\[error\]The job running on runner GitHub Actions \d+ has exceeded the "
                     r"maximum execution time of 30 minutes\.\r\n", text)
    _, body, _ = await api.dispatch(wf="stop.yml", body={"ref": "main"})
    run = await sim.wait_for_run(body["workflow_run_id"])
    assert run.conclusion == "cancelled"
    assert "##[error]The operation was canceled." in sim.log_text(run.jobs[0].id)


async def test_rerun_starts_a_new_attempt(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http, fail=True)
    _, body, _ = await api.dispatch()
    run_id = body["workflow_run_id"]
    await sim.wait_for_run(run_id)
    first_job = sim.runs[run_id].jobs[0].id
    sim.repos["acme/shop"].add_workflow(deploy_workflow(fail=False))
    status, data, _ = await api.post(f"/repos/acme/shop/actions/runs/{run_id}/rerun")
    assert status == 201 and data == {}
    run = await sim.wait_for_run(run_id)
    assert run.attempt == 2 and run.conclusion == "success"
    _, data, _ = await api.get(f"/repos/acme/shop/actions/runs/{run_id}")
    assert data["run_attempt"] == 2 and data["previous_attempt_url"].endswith("/attempts/1")
    _, latest, _ = await api.get(f"/repos/acme/shop/actions/runs/{run_id}/jobs")
    _, old, _ = await api.get(f"/repos/acme/shop/actions/runs/{run_id}/attempts/1/jobs")
    _, every, _ = await api.get(f"/repos/acme/shop/actions/runs/{run_id}/jobs",
                                params={"filter": "all"})
    assert [j["id"] for j in old["jobs"]] == [first_job]
    assert latest["jobs"][0]["run_attempt"] == 2 and latest["jobs"][0]["conclusion"] == "success"
    assert every["total_count"] == 2
    assert (await api.get(f"/repos/acme/shop/actions/runs/{run_id}/attempts/3/jobs"))[0] == 404
    attempts = [g.payload["workflow_run"]["run_attempt"] for g in receiver.got
                if g.name == "workflow_run.completed"]
    assert attempts == [1, 2]


async def test_jobs_with_needs(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    sim.repos["acme/shop"].add_workflow(Workflow(file="chain.yml", name="Chain", jobs=[
        Job("build", steps=[Step("Build", command="make", fail=True)]),
        Job("deploy (production, 3.11)", needs=["build"], steps=[Step("Ship", command="ship")]),
        Job("lint", steps=[Step("Lint", command="ruff check")]),
    ]))
    _, body, _ = await api.dispatch(wf="chain.yml", body={"ref": "main"})
    run = await sim.wait_for_run(body["workflow_run_id"])
    assert [(j.name, j.conclusion) for j in run.jobs] == [
        ("build", "failure"), ("deploy (production, 3.11)", "skipped"), ("lint", "success")]
    assert run.conclusion == "failure"


async def test_deployments_and_statuses(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    _, body, _ = await api.dispatch()
    run = await sim.wait_for_run(body["workflow_run_id"])
    status, deps, _ = await api.get("/repos/acme/shop/deployments",
                                    params={"sha": run.head_sha, "environment": "production"})
    assert status == 200 and len(deps) == 1
    dep = deps[0]
    assert dep["task"] == "deploy" and dep["ref"] == "main" and dep["payload"] == {}
    _, none, _ = await api.get("/repos/acme/shop/deployments", params={"environment": "staging"})
    assert none == []
    status, statuses, _ = await api.get(f"/repos/acme/shop/deployments/{dep['id']}/statuses")
    assert [s["state"] for s in statuses] == ["success", "in_progress"]
    assert statuses[0]["environment_url"] == "https://shop.example.com"
    assert statuses[0]["log_url"].endswith(f"/job/{run.jobs[0].id}")


# -- faults -----------------------------------------------------------------------------------


async def test_dropped_webhooks(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http)
    sim.faults.drop_webhooks = {"workflow_job", "workflow_run.completed"}
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    assert receiver.names() == ["workflow_run.requested", "workflow_run.in_progress",
                                "deployment_status.created", "deployment_status.created"]
    dropped = [f"{d.event}.{d.action}" for d in sim.deliveries if d.dropped]
    assert dropped == ["workflow_job.queued", "workflow_job.in_progress",
                       "workflow_job.completed", "workflow_run.completed"]
    assert all(d.status is None for d in sim.deliveries if d.dropped)
    sim.faults.drop_webhooks = True
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    assert len(receiver.got) == 4


async def test_duplicated_and_delayed_webhooks(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http)
    sim.faults.duplicate_webhooks = True
    sim.faults.delay_webhooks = 0.01
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    names = receiver.names()
    assert names == [n for n in SUCCESS_SEQUENCE for _ in range(2)]
    guids = [g.headers["X-GitHub-Delivery"] for g in receiver.got]
    assert guids[0::2] == guids[1::2] and len(set(guids)) == len(SUCCESS_SEQUENCE)
    assert [g.body for g in receiver.got[0::2]] == [g.body for g in receiver.got[1::2]]


async def test_reordered_and_held_webhooks(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http)
    sim.faults.reorder_webhooks = True
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    assert receiver.names() == list(reversed(SUCCESS_SEQUENCE))
    receiver.got.clear()
    sim.faults.reorder_webhooks = False
    sim.faults.hold_webhooks = True
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    assert receiver.got == []
    sim.faults.hold_webhooks = False
    await sim.release_webhooks()
    assert receiver.names() == SUCCESS_SEQUENCE


async def test_server_errors_and_secondary_rate_limit(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http)
    sim.faults.server_errors = 2
    codes = [(await api.get("/repos/acme/shop"))[0] for _ in range(3)]
    assert codes == [502, 502, 200]
    sim.faults.secondary_rate_limit = 1
    sim.faults.retry_after = 7
    status, data, headers = await api.get("/repos/acme/shop")
    assert status == 403 and headers["Retry-After"] == "7"
    assert data["message"].startswith("You have exceeded a secondary rate limit")
    assert (await api.get("/repos/acme/shop"))[0] == 200
    faults = [r.fault for r in sim.requests if r.path == "/repos/acme/shop"]
    assert faults == ["server_errors", "server_errors", None, "secondary_rate_limit", None]
    assert sim.api_calls("api", path="/repos/acme/shop") == 5


async def test_primary_rate_limit_counts_per_installation(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    api = await ready(sim, http)
    sim.rate_limit = 3
    await api.login(sim.repos["acme/shop"].installation_id)
    remaining = [int((await api.get("/repos/acme/shop"))[2]["x-ratelimit-remaining"])
                 for _ in range(3)]
    assert remaining == [2, 1, 0]
    status, data, headers = await api.get("/repos/acme/shop")
    assert status == 403 and data["message"].startswith("API rate limit exceeded")
    assert headers["x-ratelimit-remaining"] == "0" and headers["x-ratelimit-used"] == "3"


# -- other endpoints --------------------------------------------------------------------------


async def test_hook_deliveries_api_and_redelivery(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await ready(sim, http)
    receiver.status = 500
    _, body, _ = await api.dispatch()
    await sim.wait_for_run(body["workflow_run_id"])
    status, items, headers = await api.get("/app/hook/deliveries", headers=api.jwt_headers,
                                           params={"per_page": "3"})
    assert status == 200 and len(items) == 3 and 'rel="next"' in headers["Link"]
    assert items[0]["event"] == "workflow_run" and items[0]["action"] == "completed"
    assert items[0]["status_code"] == 500 and items[0]["redelivery"] is False
    status, detail, _ = await api.get(f"/app/hook/deliveries/{items[0]['id']}",
                                      headers=api.jwt_headers)
    assert detail["request"]["headers"]["X-GitHub-Event"] == "workflow_run"
    assert detail["request"]["payload"]["workflow_run"]["id"] == body["workflow_run_id"]
    receiver.status = 200
    status, _, _ = await api.post(f"/app/hook/deliveries/{items[0]['id']}/attempts",
                                  headers=api.jwt_headers)
    assert status == 202
    await sim.drain()
    assert receiver.got[-1].headers["X-GitHub-Delivery"] == items[0]["guid"]
    _, items, _ = await api.get("/app/hook/deliveries", headers=api.jwt_headers,
                                params={"status": "success"})
    assert [(i["guid"], i["redelivery"]) for i in items] == [(detail["guid"], True)]


async def test_actions_secret_is_stored_sealed(sim: Simulator, http: aiohttp.ClientSession) -> None:
    api = await ready(sim, http)
    status, key, _ = await api.get("/repos/acme/shop/actions/secrets/public-key")
    assert status == 200
    sealed = SealedBox(PublicKey(base64.b64decode(key["key"]))).encrypt(b"-----BEGIN KEY-----")
    body = {"encrypted_value": base64.b64encode(sealed).decode(), "key_id": key["key_id"]}
    path = "/repos/acme/shop/actions/secrets/DEPLOY_SSH_KEY"
    async with http.put(sim.api_url + path, json=body, headers=api.headers) as r:
        assert r.status == 201
    async with http.put(sim.api_url + path, json=body, headers=api.headers) as r:
        assert r.status == 204
    assert sim.repos["acme/shop"].secrets["DEPLOY_SSH_KEY"] == b"-----BEGIN KEY-----"
    async with http.put(sim.api_url + path, json={**body, "key_id": "1"},
                        headers=api.headers) as r:
        assert r.status == 422


async def test_manifest_flow(sim: Simulator, http: aiohttp.ClientSession) -> None:
    manifest = {"name": "my-ghapp", "url": "https://example.com",
                "redirect_url": "http://127.0.0.1:9/setup/callback",
                "hook_attributes": {"url": "http://127.0.0.1:9/api/github/webhooks"}}
    async with http.post(sim.manifest_form_url, params={"state": "xyz"},
                         data={"manifest": json.dumps(manifest)}, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    assert location.startswith("http://127.0.0.1:9/setup/callback?code=")
    assert location.endswith("&state=xyz")
    code = location.split("code=")[1].split("&")[0]
    async with http.post(f"{sim.api_url}/app-manifests/{code}/conversions") as r:
        assert r.status == 201
        app = await r.json()
    assert app["id"] == 1234 and app["pem"] == KEY and app["webhook_secret"] == SECRET
    assert app["name"] == "my-ghapp"
    assert sim.webhook_url == "http://127.0.0.1:9/api/github/webhooks"
    async with http.post(f"{sim.api_url}/app-manifests/{code}/conversions") as r:
        assert r.status == 404


async def test_send_webhook_and_padded_logs(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    delivery = await sim.send_webhook("ping", {"zen": "Keep it logically awesome.",
                                               "hook_id": 1})
    assert delivery.status == 200 and verify(receiver.got[-1])
    assert receiver.got[-1].headers["X-Hub-Signature-256"] == sim.sign(receiver.got[-1].body)
    api = await ready(sim, http)
    padded = Workflow(file="big.yml", name="Big", jobs=[Job("build", log_padding_bytes=3_000_000,
                      steps=[Step("Install", command="pip install -r requirements.txt"),
                             Step("Test", command="pytest", fail=True)])])
    sim.repos["acme/shop"].add_workflow(padded)
    _, body, _ = await api.dispatch(wf="big.yml", body={"ref": "main"})
    run = await sim.wait_for_run(body["workflow_run_id"])
    async with http.get(f"{sim.api_url}/repos/acme/shop/actions/jobs/{run.jobs[0].id}/logs",
                        headers=api.headers) as r:
        assert r.status == 200
        data = await r.read()
    assert len(data) >= 3_000_000
    lines = parse_log(data.decode())
    assert lines[-2][1] == "##[error]Process completed with exit code 1."
    times = [when for when, _ in lines]
    assert times == sorted(times)


async def test_stop_leaves_nothing_running(receiver: Receiver) -> None:
    sim = Simulator(private_key_pem=KEY, webhook_url=receiver.url, step_delay=30)
    await sim.start()
    sim.add_repository("acme/shop").add_workflow(deploy_workflow())
    run = await sim.dispatch("acme/shop", inputs={"ghapp_id": "x"})
    await sim.drain()
    api_url = sim.api_url
    await sim.stop()
    assert run.status == "queued"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(api_url + "/app")


# -- validation against GitHub's reference data ------------------------------------------------


def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"GitHub reference data not found at {REFERENCE}")
    return REFERENCE


def format_checker() -> FormatChecker:
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return datetime.fromisoformat(value).tzinfo is not None

    return checker


def oas30(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema 2020-12: ``nullable`` allows null, refs to $defs."""
    if isinstance(node, list):
        return [oas30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key == "properties":
            out[key] = {name: oas30(sub) for name, sub in value.items()}
        elif key in ("nullable", "example", "examples", "discriminator", "xml"):
            continue
        else:
            out[key] = oas30(value)
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class OpenApi:
    """Response schemas of the reference OpenAPI subset, as validators."""

    def __init__(self, path: Path) -> None:
        self.spec = json.loads(path.read_text())
        self.defs = {name: oas30(s) for name, s in self.spec["components"]["schemas"].items()}
        self.checked: list[str] = []

    def validate(self, method: str, path: str, status: int, body: Any) -> None:
        response = self.spec["paths"][path][method.lower()]["responses"][str(status)]
        if "$ref" in response:
            response = self.spec["components"]["responses"][response["$ref"].split("/")[-1]]
        schema = oas30(response["content"]["application/json"]["schema"])
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": self.defs,
                "allOf": [schema]}
        validator = Draft202012Validator(root, format_checker=format_checker())
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])
        self.checked.append(f"{method} {path} {status}")


async def test_webhook_payloads_validate_against_reference_schemas(
    sim: Simulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    ref = reference()
    api = await ready(sim, http)
    repo = sim.repos["acme/shop"]
    repo.add_workflow(deploy_workflow(fail=True, file="fail.yml"))
    repo.add_workflow(Workflow(file="slow.yml", name="Slow", timeout=True))
    for wf in ("deploy.yml", "fail.yml", "slow.yml"):
        _, body, _ = await api.dispatch(wf=wf)
        await sim.wait_for_run(body["workflow_run_id"])
    sim.auto = False
    _, body, _ = await api.dispatch()
    await sim.advance(body["workflow_run_id"])
    await sim.cancel_run(body["workflow_run_id"])
    checked: set[str] = set()
    for got in receiver.got:
        assert verify(got)
        schema_file = ref / "webhook-schemas" / f"{got.name}.schema.json"
        if not schema_file.exists():
            continue
        schema = json.loads(schema_file.read_text())
        validator = Draft202012Validator(schema, format_checker=format_checker())
        errors = list(validator.iter_errors(got.payload))
        assert not errors, f"{got.name}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])
        checked.add(got.name)
        if got.headers["X-GitHub-Event"] == "workflow_run":
            fields = schema["properties"]["workflow_run"]["properties"]
            assert set(fields) <= set(got.payload["workflow_run"]), got.name
    assert checked == {"workflow_run.requested", "workflow_run.in_progress",
                       "workflow_run.completed", "workflow_job.queued",
                       "workflow_job.in_progress", "workflow_job.completed"}
    conclusions = {g.payload["workflow_run"]["conclusion"] for g in receiver.got
                   if g.name == "workflow_run.completed"}
    assert conclusions == {"success", "failure", "timed_out", "cancelled"}
    # deployment_status has no schema in the reference: compare with its example's keys.
    example = json.loads((ref / "webhooks" / "deployment_status.created.0.json").read_text())
    ours = next(g.payload for g in receiver.got if g.name == "deployment_status.created")
    for key in ("deployment_status", "deployment"):
        assert set(example[key]) <= set(ours[key]), key


async def test_rest_answers_validate_against_the_openapi_subset(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    spec = OpenApi(reference() / "openapi-subset.json")
    api = await ready(sim, http, fail=True)
    jwt_headers = api.jwt_headers
    repo = sim.repos["acme/shop"]
    url = f"{sim.api_url}/app/installations/{repo.installation_id}/access_tokens"
    async with http.post(url, headers=jwt_headers) as r:
        spec.validate("POST", "/app/installations/{installation_id}/access_tokens", 201,
                      await r.json())
    status, body, _ = await api.dispatch()
    spec.validate("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
                  status, body)
    run_id = body["workflow_run_id"]
    await sim.wait_for_run(run_id)
    job_id = sim.runs[run_id].jobs[0].id
    dep_id = sim.runs[run_id].jobs[0].deployment_id
    rid = "/repos/{owner}/{repo}"
    calls = [
        ("/app", "/app", jwt_headers),
        ("/repos/acme/shop/installation", f"{rid}/installation", jwt_headers),
        ("/app/hook/deliveries", "/app/hook/deliveries", jwt_headers),
        (f"/app/hook/deliveries/{sim.deliveries[0].id}", "/app/hook/deliveries/{delivery_id}",
         jwt_headers),
        ("/rate_limit", "/rate_limit", {}),
        ("/repos/acme/shop/actions/workflows/deploy.yml",
         f"{rid}/actions/workflows/{{workflow_id}}", {}),
        ("/repos/acme/shop/actions/workflows/deploy.yml/runs",
         f"{rid}/actions/workflows/{{workflow_id}}/runs", {}),
        ("/repos/acme/shop/actions/runs", f"{rid}/actions/runs", {}),
        (f"/repos/acme/shop/actions/runs/{run_id}", f"{rid}/actions/runs/{{run_id}}", {}),
        (f"/repos/acme/shop/actions/runs/{run_id}/jobs", f"{rid}/actions/runs/{{run_id}}/jobs",
         {}),
        (f"/repos/acme/shop/actions/runs/{run_id}/attempts/1/jobs",
         f"{rid}/actions/runs/{{run_id}}/attempts/{{attempt_number}}/jobs", {}),
        (f"/repos/acme/shop/actions/jobs/{job_id}", f"{rid}/actions/jobs/{{job_id}}", {}),
        (f"/repos/acme/shop/check-runs/{job_id}/annotations",
         f"{rid}/check-runs/{{check_run_id}}/annotations", {}),
        ("/repos/acme/shop/deployments", f"{rid}/deployments", {}),
        (f"/repos/acme/shop/deployments/{dep_id}/statuses",
         f"{rid}/deployments/{{deployment_id}}/statuses", {}),
        ("/repos/acme/shop/actions/secrets/public-key", f"{rid}/actions/secrets/public-key", {}),
    ]
    for path, template, headers in calls:
        status, body, _ = await api.get(path, headers=headers)
        assert status == 200, (path, body)
        assert body, path
        spec.validate("GET", template, status, body)
    manifest_code = sim.manifest_code({"name": "x"})
    async with http.post(f"{sim.api_url}/app-manifests/{manifest_code}/conversions") as r:
        spec.validate("POST", "/app-manifests/{code}/conversions", 201, await r.json())
    assert len(spec.checked) == len(calls) + 3


async def test_job_webhooks_show_the_steps_moving_as_the_run_does(stack: Stack) -> None:
    stack.sim.step_delay = 0.02
    _, body = await stack.deploy("acme/shop")
    await stack.receiver.wait_for(body["id"])
    jobs = [d.payload["workflow_job"] for d in stack.sim.deliveries if d.event == "workflow_job"]
    assert jobs[0]["status"] == "queued" and jobs[0]["steps"] == []
    running = [job for job in jobs if job["status"] == "in_progress"]
    # As GitHub shows it: first only "Set up job" running, then one step after the other.
    assert [s["status"] for s in running[0]["steps"]][:2] == ["in_progress", "queued"]
    done = [sum(s["status"] == "completed" for s in job["steps"]) for job in running]
    assert done == list(range(len(running))) and len(running) >= 3
    assert jobs[-1]["status"] == "completed"
    assert {s["status"] for s in jobs[-1]["steps"]} == {"completed"}
