"""The two origins: the REST API (auth, faults, rate limits, ETags) and the log host."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import TYPE_CHECKING

from aiohttp import web

from ghapp.simulator import (
    artifacts,
    graphql_api,
    logs,
    oauth,
    routes_actions,
    routes_app,
    routes_gate,
    routes_repo,
)
from ghapp.simulator.auth import Bucket, verify_jwt
from ghapp.simulator.http import ApiError, Call, RequestRecord, Route, Router, reset_connection
from ghapp.simulator.loopback import loopback_only

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub
    from ghapp.simulator.state import JobState, RunState

GHES_PREFIX = "/api/v3"
API_VERSIONS = {"2022-11-28", "2026-03-10"}
GHES_VERSIONS = {"2022-11-28"}
GHES_RELEASE = "3.20.0"
JWT_ERROR = "A JSON web token could not be decoded"
AUTH_DOCS = "https://docs.github.com/rest"
SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {rid}."
)


def request_id() -> str:
    """An ``x-github-request-id`` like GitHub's."""
    parts = [secrets.token_hex(2).upper(), secrets.token_hex(2).upper(),
             secrets.token_hex(3).upper(), secrets.token_hex(3).upper(),
             secrets.token_hex(4).upper()]
    return ":".join(parts)


def _credentials(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") in (wanted, "*") for tag in header.split(","))


class ApiServer:
    """Dispatches API requests through recording, faults, routing, auth and rate limits."""

    def __init__(self, sim: SimulatedGitHub) -> None:
        self.sim = sim
        self.router = Router()
        routes_app.register(self.router, sim)
        routes_actions.register(self.router, sim)
        routes_repo.register(self.router, sim)
        routes_gate.register(self.router, sim)
        graphql_api.register(self.router, sim)
        oauth.register(self.router, sim)

    def app(self) -> web.Application:
        """The aiohttp application of the API origin."""
        # Only requests addressed to this machine (DNS rebinding: see ghapp/simulator/loopback.py).
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[loopback_only])
        # Routes of whoever embeds the simulator (the sandbox's /sandbox/...), outside GitHub's
        # API: no auth, no faults, no records.
        app.add_routes(self.sim.extra_routes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every API request comes through here."""
        record = RequestRecord(request.method, request.path, dict(request.query),
                               dict(request.headers), "api")
        self.sim.requests.append(record)
        rid = request_id()
        bucket = self.sim.rate_limits.bucket(f"ip:{request.remote}")
        try:
            response, bucket = await self._answer(request, record, rid, bucket)
        except ApiError as exc:
            response = exc.response()
        response.headers["x-github-request-id"] = rid
        response.headers["x-github-media-type"] = "github.v3; format=json"
        response.headers["x-ratelimit-limit"] = str(bucket.limit)
        response.headers["x-ratelimit-remaining"] = str(bucket.remaining)
        response.headers["x-ratelimit-reset"] = str(bucket.reset)
        response.headers["x-ratelimit-used"] = str(bucket.used)
        response.headers["x-ratelimit-resource"] = (
            "graphql" if record.kind == "graphql" else "core")
        response.headers["x-github-api-version-selected"] = request.headers.get(
            "X-GitHub-Api-Version", "2022-11-28")
        if self.sim.faults.ghes:
            response.headers["x-github-enterprise-version"] = GHES_RELEASE
        record.status = response.status
        return response

    def _fault(self, record: RequestRecord, rid: str) -> ApiError | None:
        faults = self.sim.faults
        if faults.server_errors_until > time.monotonic():
            record.fault = "server_errors"
            return ApiError(502, "Server Error")
        if faults.server_errors > 0:
            faults.server_errors -= 1
            record.fault = "server_errors"
            return ApiError(502, "Server Error")
        if faults.secondary_rate_limit > 0:
            faults.secondary_rate_limit -= 1
            record.fault = "secondary_rate_limit"
            return ApiError(403, SECONDARY.format(rid=rid),
                            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                            "#about-secondary-rate-limits",
                            {"Retry-After": str(faults.retry_after)})
        return None

    async def _answer(self, request: web.Request, record: RequestRecord, rid: str,
                      bucket: Bucket) -> tuple[web.StreamResponse, Bucket]:
        fault = self._fault(record, rid)
        if fault is not None:
            return fault.response(), bucket
        version = request.headers.get("X-GitHub-Api-Version")
        allowed = GHES_VERSIONS if self.sim.faults.ghes else API_VERSIONS
        if version is not None and version not in allowed:
            raise ApiError(400, f"Invalid API version provided: {version}",
                           "https://docs.github.com/rest/overview/api-versions")
        path = request.path
        if path.startswith(GHES_PREFIX + "/"):
            path = path[len(GHES_PREFIX):]
        route, params, _ = self.router.match(request.method, path)
        if route is None:
            raise ApiError(404, "Not Found")
        if self.sim.on_unknown_repository is not None and "owner" in params and "repo" in params \
                and self.sim.world.repo_of(params["owner"], params["repo"]) is None:
            self.sim.on_unknown_repository(params["owner"], params["repo"])
        call = Call(request, params, record=record)
        bucket = self._authenticate(route, call, request) or bucket
        if record.kind == "graphql" and call.installation_id is not None:
            # GraphQL has a budget of its own (points, here one a query).
            bucket = self.sim.rate_limits.bucket(f"graphql:inst:{call.installation_id}")
        if bucket.remaining <= 0:
            exceeded = ApiError(403, f"API rate limit exceeded for {self._who(call)}.",
                                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")
            return exceeded.response(), bucket
        try:
            response = await route.handler(call)
        except ApiError as exc:
            response = exc.response()
        if (request.method == "GET" and response.status == 200
                and isinstance(response, web.Response) and response.body is not None
                and response.content_type == "application/json"):
            body = response.body if isinstance(response.body, bytes) else b""
            etag = f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'
            response.headers["ETag"] = etag
            if _etag_matches(request.headers.get("If-None-Match"), etag):
                return web.Response(status=304, headers={"ETag": etag}), bucket
        bucket.used += 1
        return response, bucket

    def _who(self, call: Call) -> str:
        if call.installation_id is not None:
            return f"installation ID {call.installation_id}"
        return f"app ID {self.sim.app_id}"

    def _authenticate(self, route: Route, call: Call, request: web.Request) -> Bucket | None:
        """Check credentials for the route; the bucket the request counts against."""
        if route.auth == "none":
            return None
        value = _credentials(request)
        is_jwt = value is not None and value.count(".") == 2
        if route.auth == "jwt" or (route.auth == "any" and is_jwt):
            if value is None or not is_jwt:
                raise ApiError(401, JWT_ERROR, AUTH_DOCS)
            problems = [
                verify_jwt(value, key, self.sim.app_id, self.sim.client_id)
                for key in self.sim.accepted_public_keys
            ]
            if None not in problems:
                raise ApiError(401, JWT_ERROR, AUTH_DOCS)
            return self.sim.rate_limits.bucket("app")
        info = self.sim.tokens.check(value) if value else None
        if info is None:
            raise ApiError(401, "Bad credentials", AUTH_DOCS)
        if "owner" in call.params and "repo" in call.params:
            repo = self.sim.world.repo_of(call.params["owner"], call.params["repo"])
            if repo is None:
                raise ApiError(404, "Not Found")
            if repo.installation_id != info.installation_id or not info.covers(repo.full_name):
                raise ApiError(401, "Bad credentials", AUTH_DOCS)
        call.installation_id, call.token = info.installation_id, info
        return self.sim.rate_limits.bucket(f"inst:{info.installation_id}")


class LogServer:
    """The log host: serves signed, short-lived job log URLs and refuses credentials."""

    def __init__(self, sim: SimulatedGitHub) -> None:
        self.sim = sim

    async def _fault(self, request: web.Request, run: RunState, job: JobState,
                     ) -> web.StreamResponse | None:
        """The answer of a switched-on log host fault, or None to serve the log."""
        faults = self.sim.faults
        if faults.redirect_logs is not None:
            return web.Response(status=302, headers={"Location": faults.redirect_logs})
        if faults.reset_logs:
            reset_connection(request)
            return web.Response(status=500)  # never sent: the connection is gone
        body = b"".join(logs.render(run, job))
        if faults.cut_logs:
            response = web.StreamResponse(status=200)
            response.content_type = "text/plain"
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            reset_connection(request)
            return response
        if faults.stall_logs:
            response = web.StreamResponse(status=200)
            response.content_type = "text/plain"
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                for byte in body:
                    await asyncio.sleep(1.0)
                    if self.sim.stopping.is_set():
                        break
                    await response.write(bytes([byte]))
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client gave up, as it should
            return response
        return None

    def app(self) -> web.Application:
        """The aiohttp application of the log origin."""
        app = web.Application(middlewares=[loopback_only])
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    @staticmethod
    def _xml(status: int, code: str, message: str) -> web.Response:
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>")
        return web.Response(status=status, text=body, content_type="application/xml")

    def _artifact(self, request: web.Request, id_text: str) -> web.StreamResponse:
        """``GET /artifacts/{id}/signedcontent?urlExpires=&urlSignature=``: the zip."""
        if request.method != "GET" or not id_text.isdigit():
            return self._xml(404, "ResourceNotFound", "The specified resource does not exist.")
        if "Authorization" in request.headers:
            self.sim.log_auth_violations += 1
            return self._xml(400, "InvalidAuthenticationInfo",
                             "Authentication information is not given in the correct format.")
        artifact_id = int(id_text)
        try:
            expires = int(request.query.get("urlExpires", ""))
        except ValueError:
            expires = 0
        signature = request.query.get("urlSignature", "")
        if not artifacts.signature_ok(self.sim.log_key, artifact_id, expires, signature):
            return self._xml(403, "AuthenticationFailed", "Signature did not match.")
        if expires < time.time() * 1000:
            return self._xml(403, "AuthenticationFailed", "Signed expiry time has expired.")
        artifact = self.sim.world.artifacts.get(artifact_id)
        if artifact is None:
            return self._xml(404, "BlobNotFound", "The specified blob does not exist.")
        return web.Response(body=artifact.zipped, content_type="application/zip")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /jobs/{id}/signedlogcontent?urlExpires=&urlSigningMethod=&urlSignature=``."""
        record = RequestRecord(request.method, request.path, dict(request.query),
                               dict(request.headers), "logs")
        self.sim.requests.append(record)
        response = await self._answer(request)
        record.status = response.status
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "artifacts" and parts[2] == "signedcontent":
            return self._artifact(request, parts[1])
        if request.method != "GET" or len(parts) != 3 or parts[0] != "jobs" \
                or parts[2] != "signedlogcontent" or not parts[1].isdigit():
            return self._xml(404, "ResourceNotFound", "The specified resource does not exist.")
        if "Authorization" in request.headers:
            self.sim.log_auth_violations += 1
            return self._xml(400, "InvalidAuthenticationInfo",
                             "Authentication information is not given in the correct format.")
        job_id = int(parts[1])
        try:
            expires = int(request.query.get("urlExpires", ""))
        except ValueError:
            expires = 0
        signature = request.query.get("urlSignature", "")
        if not logs.signature_ok(self.sim.log_key, job_id, expires, signature):
            return self._xml(403, "AuthenticationFailed", "Signature did not match.")
        if expires < time.time() * 1000:
            return self._xml(403, "AuthenticationFailed", "Signed expiry time has expired.")
        job = self.sim.world.jobs.get(job_id)
        if job is None:
            return self._xml(404, "BlobNotFound", "The specified blob does not exist.")
        run = self.sim.world.runs[job.run_id]
        faulty = await self._fault(request, run, job)
        if faulty is not None:
            return faulty
        response = web.StreamResponse(status=200)
        response.content_type = "text/plain"
        response.charset = "utf-8"
        response.enable_chunked_encoding()
        await response.prepare(request)
        for chunk in logs.render(run, job):
            await response.write(chunk)
        await response.write_eof()
        return response
