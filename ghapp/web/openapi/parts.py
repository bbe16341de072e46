"""The building blocks of ghapp's OpenAPI operations: schema references, JSON answers,
shared headers and parameters, and one operation's description."""

from __future__ import annotations

from typing import Any

from ghapp.web import http

REF_TEMPLATE = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    """A reference to the named schema of the components."""
    return {"$ref": REF_TEMPLATE.format(model=name)}


def json_answer(
    name: str, description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON answer of the named schema, with its description and headers."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref(name)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
UNAUTHORIZED = json_answer("ErrorBody", "missing or wrong bearer token", headers=WWW_AUTHENTICATE)
NOT_FOUND = json_answer("ErrorBody", "no such deployment")
DEPLOYMENT_ID = {
    "name": "deployment_id",
    "in": "path",
    "required": True,
    "description": "anything else is no deployment (404)",
    "schema": {"type": "string", "pattern": http.DEPLOYMENT_ID_PATTERN, "maxLength": 64},
    "example": "dep_0123456789abcdef01234567",
}
LATE = json_answer("ErrorBody", "the body did not arrive within 30 s of the headers")
# createDeployment's answer leads to the deployment's other operations (the stateful phase).
DEPLOYMENT_LINKS = {
    name: {"operationId": operation, "parameters": {"deployment_id": "$response.body#/id"}}
    for name, operation in (
        ("GetDeployment", "getDeployment"),
        ("CancelDeployment", "cancelDeployment"),
        ("ResendCallback", "resendCallback"),
    )
}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def describe(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    secured: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One operation: its id, summary, answers and tag; bearer-secured unless told."""
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        **extra,
        "responses": responses,
    }
    operation["security"] = BEARER if secured else []
    return operation
