"""GET /api/v1/deliveries: the local delivery log, newest first; and one delivery in full."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghapp.web.authz import authorize
from ghapp.web.http import error, query_int, services_of
from ghapp.work.delivery_log import DeliveryLog

SIGNATURE_VERDICTS = ("ok", "bad", "missing", "unchecked")


def _log_of(request: Request) -> DeliveryLog | None:
    delivery_log: DeliveryLog | None = getattr(services_of(request), "delivery_log", None)
    return delivery_log


async def list_deliveries(request: Request) -> Response:
    """GET /api/v1/deliveries?limit=&event=&outcome=&signature= (newest first)."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    params = request.query_params
    limit = query_int(params.get("limit"), default=50, top=1000)
    if limit is None:
        return error(
            422,
            "invalid_request",
            "limit must be an integer from 1 to 1000",
            errors=[{"field": "limit", "message": "must be 1..1000"}],
        )
    signature = params.get("signature")
    if signature is not None and signature not in SIGNATURE_VERDICTS:
        return error(
            422,
            "invalid_request",
            "signature must be one of " + ", ".join(SIGNATURE_VERDICTS),
            errors=[{"field": "signature", "message": "unknown verdict"}],
        )
    for name in ("event", "outcome"):
        value = params.get(name)
        # PostgreSQL text cannot hold NUL, and no event or outcome is that long.
        if value is not None and ("\x00" in value or len(value) > 100):
            return error(
                422,
                "invalid_request",
                f"{name} must be at most 100 characters, without NUL",
                errors=[{"field": name, "message": "invalid"}],
            )
    delivery_log = _log_of(request)
    if delivery_log is None or not delivery_log.enabled:
        return JSONResponse({"deliveries": [], "enabled": False})
    found = await delivery_log.recent(
        limit=limit, event=params.get("event"), outcome=params.get("outcome"), signature=signature
    )
    body = {"deliveries": [d.summary() for d in found], "enabled": True}
    # Received by this process but never written: sampled out under load, or the database failed.
    body["dropped"] = delivery_log.dropped
    return JSONResponse(body)


async def get_delivery(request: Request) -> Response:
    """GET /api/v1/deliveries/{id}: one delivery (by log id or X-GitHub-Delivery) in full."""
    grant = await authorize(request)
    if isinstance(grant, Response):
        return grant
    delivery_log = _log_of(request)
    key = request.path_params["delivery_id"]
    found = None
    if delivery_log is not None and delivery_log.enabled and "\x00" not in key and len(key) <= 100:
        found = await delivery_log.get(key)
    if found is None:
        return error(404, "not_found", "no such delivery in the local log")
    return JSONResponse(found.detail())


routes = [
    Route("/api/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/v1/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
]
