"""The request toolkit of ghapp's JSON routes: error answers, the bearer token, bounded and
validated bodies, the callback URL rule, Idempotency-Key, ids and query parameters."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ghapp.config import Settings
from ghapp.web.limits import API_CAP, BodyRefused, read_body

if TYPE_CHECKING:
    from ghapp.core.deploys import DeploymentRecord
    from ghapp.web.services import Services

ModelT = TypeVar("ModelT", bound=BaseModel)
# ghapp's own ids are `dep_` and 24 hex digits; this is looser, and bounded.
DEPLOYMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEPLOYMENT_ID = re.compile(DEPLOYMENT_ID_PATTERN)
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,200}$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """An error answer: `{"error", "message"}` plus details."""
    headers = extra.pop("headers", None)
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def authorized(request: Request) -> bool:
    """Whether the request carries ORCHESTRATOR_TOKEN itself (the admin token; scoped tokens
    are checked by ghapp.web.authz)."""
    expected = services_of(request).settings.orchestrator_token or ""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def unauthorized() -> JSONResponse:
    return error(
        401,
        "unauthorized",
        "missing or wrong bearer token (Authorization: Bearer $ORCHESTRATOR_TOKEN)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def callback_allowed(url: str, allowed: list[str], default_url: str | None = None) -> bool:
    """Whether ghapp may call `url` back (docs/configuration.md, "The orchestrator").

    With CALLBACK_ALLOWED_HOSTS (`allowed`): its host equals an entry's, and its port too where
    the entry names one. Without: its scheme, host and effective port equal `default_url`'s.
    """
    try:
        scheme, host, port = _origin(url)
        if not allowed:
            return default_url is not None and (scheme, host, port) == _origin(default_url)
    except ValueError:
        return False
    for entry in allowed:
        wanted = urlsplit("//" + entry.strip().lower())
        try:
            wanted_port = wanted.port
        except ValueError:
            continue
        if wanted.hostname == host and wanted_port in (None, port):
            return True
    return False


async def stored(services: Services, deployment_id: str) -> DeploymentRecord | None:
    """The deployment with this id; None too for what cannot be an id (no lookup then)."""
    if not DEPLOYMENT_ID.fullmatch(deployment_id):
        return None
    return await services.store.get(deployment_id)


def query_int(value: str | None, *, default: int, top: int) -> int | None:
    """A query parameter that must be an integer in 1..top (None: it is not)."""
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    number = int(value)
    return number if 1 <= number <= top else None


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the API's `errors` list."""
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors()
    ]


async def request_model(
    request: Request, model: type[ModelT], *, empty: bytes | None = None
) -> ModelT | Response:
    """The body read within the API's cap and validated, or the 413/408, 400 or 422 answer;
    `empty` stands for a body that was left out."""
    try:
        raw = await read_body(request, API_CAP)
    except BodyRefused as exc:
        return error(exc.status, exc.code, str(exc))
    try:
        # Strict: no NaN or Infinity, no lone surrogates; they cannot be stored or sent back.
        payload = from_json(raw or empty or b"", allow_inf_nan=False)
    except ValueError as exc:
        return error(400, "invalid_json", f"the body is not JSON: {exc}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return error(
            422, "invalid_request", "the body breaks the schema", errors=field_errors(exc)
        )


def callback_target(settings: Settings, requested: str | None) -> str | Response:
    """Where a request's callbacks go (its own URL or ORCHESTRATOR_CALLBACK_URL), or the 422."""
    callback_url = requested or settings.orchestrator_callback_url
    if callback_url is None:
        return error(
            422,
            "invalid_request",
            "no callback_url in the request and no ORCHESTRATOR_CALLBACK_URL set",
            errors=[{"field": "callback_url", "message": "required"}],
        )
    if not callback_allowed(
        callback_url, settings.callback_allowed_hosts, settings.orchestrator_callback_url
    ):
        where = (
            "its host is not in CALLBACK_ALLOWED_HOSTS"
            if settings.callback_allowed_hosts
            else "its scheme, host and port differ from ORCHESTRATOR_CALLBACK_URL's "
            "(set CALLBACK_ALLOWED_HOSTS to allow others)"
        )
        return error(
            422,
            "invalid_request",
            f"callback_url is not allowed: {where}",
            errors=[{"field": "callback_url", "message": "host not allowed"}],
        )
    return callback_url


def idempotency_key(request: Request) -> str | Response | None:
    """The request's Idempotency-Key (None without one), or the 422 for a malformed one."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        return error(
            422,
            "invalid_request",
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
            errors=[{"field": "Idempotency-Key", "message": "invalid"}],
        )
    return key
