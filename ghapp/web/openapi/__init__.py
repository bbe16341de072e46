"""`GET /openapi.json`: the OpenAPI 3.1 description of ghapp's HTTP interface.

The description (`document`, its paths and schemas) is built at the first request for it:
a server nobody asks for it never loads its models (idle memory).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ghapp.web.openapi.routes import has_route as has_route


def build_spec(
    *, webhook_path: str = "/api/github/webhooks", deliveries: bool = False
) -> dict[str, Any]:
    """The OpenAPI document (a fresh copy the caller may change)."""
    from ghapp.web.openapi import document

    return document.build_spec(webhook_path=webhook_path, deliveries=deliveries)


async def openapi_json(request: Request) -> Response:
    """GET /openapi.json: the description of this server (no token needed to read it)."""
    from ghapp.web.openapi import document

    return await document.openapi_json(request)


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
