"""The OpenAPI description of the operations routes: the webhook endpoint, health, readiness,
metrics, and the local delivery log."""

from __future__ import annotations

from typing import Any

from ghapp.web.openapi.parts import UNAUTHORIZED, describe, json_answer

DELIVERIES_PATH = "/api/v1/deliveries"


def deliveries_paths() -> dict[str, Any]:
    """The local delivery log's routes (served only where the log is kept)."""
    listing = describe(
        "listDeliveries",
        "Webhook deliveries ghapp received recently (its local log), newest first",
        {
            "200": json_answer("DeliveryList", "the deliveries"),
            "401": UNAUTHORIZED,
            "422": json_answer("ErrorBody", "a query parameter is out of range"),
        },
        tag="operations",
        parameters=[
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
            },
            *(
                {
                    "name": name,
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 100, "pattern": "^[^\\x00]*$"},
                }
                for name in ("event", "outcome")
            ),
            {
                "name": "signature",
                "in": "query",
                "schema": {"type": "string", "enum": ["ok", "bad", "missing", "unchecked"]},
            },
        ],
    )
    one = describe(
        "getDelivery",
        "One logged delivery in full, by the log's id or by X-GitHub-Delivery",
        {
            "200": json_answer("DeliveryDetail", "the delivery"),
            "401": UNAUTHORIZED,
            "404": json_answer("ErrorBody", "no such delivery in the local log"),
        },
        tag="operations",
        parameters=[
            {
                "name": "delivery_id",
                "in": "path",
                "required": True,
                "description": "anything longer is in no log (404)",
                "schema": {"type": "string", "maxLength": 100, "pattern": "^[^\\x00]+$"},
            }
        ],
    )
    return {
        DELIVERIES_PATH: {"get": listing},
        DELIVERIES_PATH + "/{delivery_id}": {"get": one},
    }


def operations_paths(webhook_path: str) -> dict[str, Any]:
    """The webhook endpoint, health, readiness and metrics."""
    webhook = describe(
        "receiveWebhook",
        "GitHub's webhook deliveries (signed with WEBHOOK_SECRET, X-Hub-Signature-256)",
        {
            "200": json_answer("WebhookAnswer", "processed, or a delivery seen before"),
            "202": json_answer("WebhookAnswer", "accepted; an event ghapp ignores"),
            "400": json_answer(
                "WebhookAnswer", "X-GitHub-Event or X-GitHub-Delivery missing, or not JSON"
            ),
            "401": json_answer("WebhookAnswer", "X-Hub-Signature-256 missing or wrong"),
            "408": json_answer(
                "WebhookAnswer", "the body did not arrive within 30 s of the headers"
            ),
            "413": json_answer("WebhookAnswer", "over 25 MiB"),
            "500": json_answer(
                "WebhookAnswer", "handling failed: GitHub lists it failed, redeliverable"
            ),
        },
        tag="github",
        secured=False,
        parameters=[
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
            for name in ("X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery")
        ],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    )
    return {
        webhook_path: {"post": webhook},
        "/healthz": {
            "get": describe(
                "healthz",
                "Liveness: the process answers",
                {"200": json_answer("Health", "alive")},
                tag="operations",
                secured=False,
            )
        },
        "/readyz": {
            "get": describe(
                "readyz",
                "Readiness: the database answers and the App key loads",
                {
                    "200": json_answer("Readiness", "ready"),
                    "503": json_answer("Readiness", "not ready"),
                },
                tag="operations",
                secured=False,
            )
        },
        "/metrics": {
            "get": describe(
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="operations",
                secured=False,
            )
        },
    }
