"""Routing and answers in GitHub's style: JSON bodies, ``{message, documentation_url}`` errors."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ghapp.simulator.auth import TokenInfo
from ghapp.simulator.state import Repository, World

JSON_TYPE = "application/json; charset=utf-8"
DOCS = "https://docs.github.com/rest"


# What a request is for, by its path (GHES's /api/v3 prefix aside): the simulator counts
# requests by kind (`Simulator.request_counts`).
REQUEST_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("graphql", re.compile(r"^(/api)?/graphql$")),
    ("listing", re.compile(r"^/repos/[^/]+/[^/]+/actions/(workflows/[^/]+/)?runs$")),
    ("run", re.compile(r"^/repos/[^/]+/[^/]+/actions/runs/\d+$")),
    ("jobs", re.compile(r"^/repos/[^/]+/[^/]+/actions/(runs/\d+/(attempts/\d+/)?jobs"
                        r"|jobs/\d+(/logs)?)$")),
    ("deployments", re.compile(r"^/repos/[^/]+/[^/]+/deployments(/\d+(/statuses)?)?$")),
    ("dispatch", re.compile(r"^/repos/[^/]+/[^/]+/actions/workflows/[^/]+/dispatches$")),
    ("token", re.compile(r"^/app/installations/\d+/access_tokens$")),
    ("installation", re.compile(r"^/repos/[^/]+/[^/]+/installation$")),
)


def request_kind(origin: str, path: str) -> str:
    """`graphql`, `listing` (runs), `run` (one run), `jobs`, `deployments` (REST deployments
    and statuses), `dispatch`, `token`, `installation`, `logs` (the log host) or `other`."""
    if origin == "logs":
        return "logs"
    path = path.removeprefix("/api/v3")
    for kind, pattern in REQUEST_KINDS:
        if pattern.match(path):
            return kind
    return "other"


@dataclass
class RequestRecord:
    """One request either origin received; ``fault`` names the fault that answered it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    origin: str
    status: int | None = None
    fault: str | None = None
    time: float = field(default_factory=time.time)
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = request_kind(self.origin, self.path)


class ApiError(Exception):
    """Raised by handlers to answer a GitHub-shaped error."""

    def __init__(self, status: int, message: str, documentation_url: str = DOCS,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The error as an HTTP answer."""
        body = {"message": self.message, "documentation_url": self.documentation_url}
        return json_response(body, self.status, self.headers)


def repo_of(world: World, call: Call) -> Repository:
    """The repository named by the route's {owner}/{repo}, or GitHub's 404."""
    repo = world.repo_of(call.params["owner"], call.params["repo"])
    if repo is None:
        raise not_found()
    return repo


# How much each permission level allows (GitHub's order).
PERMISSION_LEVELS = {"read": 1, "write": 2, "admin": 3}


def require_permission(call: Call, name: str, level: str, documentation_url: str = DOCS) -> None:
    """GitHub's 403 when the installation token lacks the permission (App JWTs are not
    asked: their routes do not take one)."""
    if call.token is None:
        return
    has = PERMISSION_LEVELS.get(call.token.permissions.get(name, ""), 0)
    if has < PERMISSION_LEVELS[level]:
        raise ApiError(403, "Resource not accessible by integration", documentation_url)


def not_found(documentation_url: str = DOCS) -> ApiError:
    """GitHub's 404."""
    return ApiError(404, "Not Found", documentation_url)


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with GitHub's content type."""
    body = json.dumps(data).encode()
    response = web.Response(body=body, status=status, headers=headers)
    response.headers["Content-Type"] = JSON_TYPE
    return response


def empty_response(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """An answer without a body (204, 202 bodies are ``{}`` instead)."""
    response = web.Response(status=status, headers=headers)
    response.headers["Content-Type"] = JSON_TYPE
    return response


@dataclass
class Call:
    """A routed request: path parameters and who is calling."""

    request: web.Request
    params: dict[str, str]
    installation_id: int | None = None
    token: TokenInfo | None = None
    record: RequestRecord | None = None

    def query(self, name: str) -> str | None:
        """A query-string value."""
        return self.request.query.get(name)

    def int_param(self, name: str) -> int:
        """A numeric path parameter (404 when it is not a number, like GitHub)."""
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found() from None

    async def body(self) -> dict[str, Any]:
        """The JSON object body ({} when empty)."""
        raw = await self.request.read()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return data

    def page(self, default: int = 30) -> tuple[int, int]:
        """``per_page`` (1..100) and ``page`` (from 1)."""
        try:
            per_page = int(self.query("per_page") or default)
            page = int(self.query("page") or 1)
        except ValueError:
            raise ApiError(422, "Invalid pagination parameters") from None
        return max(1, min(per_page, 100)), max(page, 1)


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    """A method and path pattern; ``auth`` is ``jwt``, ``token``, ``any`` or ``none``."""

    method: str
    regex: re.Pattern[str]
    handler: Handler
    auth: str


class Router:
    """Path patterns like ``/repos/{owner}/{repo}/actions/runs/{run_id}``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, pattern: str, auth: str = "token") -> Callable[[Handler], Handler]:
        """Decorator that registers a handler."""
        parts = re.split(r"(\{[a-z_]+(?::[^}]+)?\})", pattern)
        regex = ""
        for part in parts:
            found = re.fullmatch(r"\{([a-z_]+)(?::([^}]+))?\}", part)
            if found:
                regex += f"(?P<{found.group(1)}>{found.group(2) or '[^/]+'})"
            else:
                regex += re.escape(part)
        compiled = re.compile(f"^{regex}/?$")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, compiled, handler, auth))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route, its parameters, and whether some route had this path at all."""
        path_known = False
        for route in self.routes:
            found = route.regex.match(path)
            if found:
                path_known = True
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, found.groupdict(), True
        return None, {}, path_known


def reset_connection(request: web.Request) -> None:
    """Drop the request's connection with a TCP reset (SO_LINGER 0), as a failing host does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
