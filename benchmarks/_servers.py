"""The ingest benchmark's ceiling, an ASGI factory for uvicorn's command line.

    python -m uvicorn --factory benchmarks._servers:bare --workers 2 ...   (needs WEBHOOK_SECRET)
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

