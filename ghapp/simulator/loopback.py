"""Answer only requests addressed to this machine: the sandbox's guard against DNS rebinding.

A page on another site can point its own name at 127.0.0.1 and have the browser send requests
to a local server; those requests still carry the page's name in `Host`. The simulator and the
sandbox's ghapp answer only a `Host` that is `localhost`, an address in 127.0.0.0/8 or `::1`
(any port); any other is answered `421` with a message that says why.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

STATUS = 421
_PORT_MAX = 65535


def loopback_host(value: str | None) -> bool:
    """Whether a `Host` header names this machine: localhost, 127.0.0.0/8 or ::1, any port."""
    if not value:
        return False
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, port = host[1:end], host[end + 1 :]
        if end < 0 or (port and not port.startswith(":")):
            return False
        port = port[1:]
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    if port and not (port.isascii() and port.isdigit() and int(port) <= _PORT_MAX):
        return False
    name = name.removesuffix(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def refusal(host: str | None) -> dict[str, str]:
    """The body of the `421`: what was refused and why."""
    shown = "none" if host is None else repr(host[:100])
    return {
        "error": "misdirected_request",
        "message": f"this sandbox answers only requests addressed to localhost, 127.0.0.0/8 or "
        f"[::1] (Host was {shown}): requests for other names are refused so that a web page "
        "cannot reach it through DNS rebinding",
    }


@web.middleware
async def loopback_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp middleware: `421` unless the request's Host is on loopback."""
    host = request.headers.get("Host")
    if not loopback_host(host):
        return web.json_response(refusal(host), status=STATUS)
    return await handler(request)


ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class LoopbackOnly:
    """ASGI middleware: `421` for an HTTP request whose Host is not on loopback."""

    def __init__(self, app: ASGIApp) -> None:
        # `app`: the wrapped application (uvicorn's shutdown hook looks for it by that name).
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Refuse, or pass the request on."""
        if scope["type"] == "http":
            host = next(
                (value.decode("latin-1") for name, value in scope["headers"] if name == b"host"),
                None,
            )
            if not loopback_host(host):
                body = json.dumps(refusal(host)).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": STATUS, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
