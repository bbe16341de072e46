"""ASGI factories for uvicorn's command line: the bare verify-and-parse ceiling, and ghapp.

    python -m uvicorn --factory benchmarks._servers:bare  --workers 2 ...   (needs WEBHOOK_SECRET)
    python -m uvicorn --factory benchmarks._servers:ghapp --workers 2 ...   (ghapp's settings)

`ghapp serve` has no workers option and hands uvicorn an app object, which uvicorn cannot fork;
the `ghapp` factory builds the same app the same way so uvicorn can run it in several workers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def bare() -> Starlette:
    """The ceiling: verify X-Hub-Signature-256, check the two headers, parse the JSON, answer."""
    secret = os.environ["WEBHOOK_SECRET"].split(",")[0].encode()
    path = os.environ.get("WEBHOOK_PATH", "/api/github/webhooks")

    async def receive(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return JSONResponse({"error": "bad signature"}, 401)
        if "x-github-event" not in request.headers or "x-github-delivery" not in request.headers:
            return JSONResponse({"error": "missing headers"}, 400)
        try:
            payload: Any = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "not JSON"}, 400)
        return JSONResponse({"ok": True, "action": payload.get("action")})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route(path, receive, methods=["POST"]), Route("/readyz", healthz)]
    )


def ghapp() -> Starlette:
    """ghapp's app exactly as `ghapp serve --workers N` builds it in each worker."""
    from ghapp.app import app_from_env

    return app_from_env()
