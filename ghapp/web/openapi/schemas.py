"""The schemas of the OpenAPI description: the contract's models, and the rules validators
enforce in code (patterns, lengths, limits) stated as JSON Schema.

The schemas come from the pydantic models of the contract (`ghapp.core.models`), so the description
cannot drift from what the handlers validate and answer.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ghapp.core import models, validation
from ghapp.web.openapi import access_paths, check_paths, gate_paths, release_paths
from ghapp.web.openapi.parts import REF_TEMPLATE


class DeployKeyCreated(BaseModel):
    """Answer of `POST /api/v1/repos/{owner}/{repo}/deploy-key`."""

    secret_name: Literal["DEPLOY_SSH_KEY"] = Field(
        description="the Actions secret that now holds the private key"
    )
    public_key: str = Field(
        description="line for the server's authorized_keys",
        examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... ghapp-deploy@acme/shop"],
    )
    fingerprint: str = Field(
        description="SHA256 fingerprint as OpenSSH prints it", examples=["SHA256:abc..."]
    )


class Health(BaseModel):
    """Answer of `GET /healthz`."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Answer of `GET /readyz`: ready, or what is wrong."""

    status: Literal["ready", "unavailable"]
    problems: dict[str, str] | None = Field(
        default=None, description="what is not ready, by part (database, settings)"
    )


class WebhookAnswer(BaseModel):
    """Answer of the webhook endpoint: what became of the delivery."""

    model_config = ConfigDict(extra="allow")

    outcome: str = Field(description="e.g. processed, duplicate, ignored, bad_signature")
    message: str | None = None


class DeliverySummary(BaseModel):
    """A webhook delivery as ghapp's local delivery log keeps it (a list item)."""

    id: str = Field(description="the log's own id")
    delivery_id: str | None = Field(description="X-GitHub-Delivery (GitHub's GUID)")
    received_at: datetime
    event: str | None
    action: str | None
    signature: Literal["ok", "bad", "missing", "unchecked"]
    outcome: str = Field(description="what ghapp made of it, e.g. processed, duplicate, ignored")
    status: int = Field(description="the HTTP status ghapp answered")
    duration_ms: float
    body_size: int
    truncated: bool = Field(description="the stored body or headers were cut to the log's limits")


class DeliveryDetail(DeliverySummary):
    """One logged delivery in full: headers (credentials redacted) and body."""

    headers: dict[str, str]
    body: str | None = Field(description="the body as text, when it is UTF-8")
    body_base64: str | None = Field(description="the body in base64, when it is not UTF-8")


class DeliveryList(BaseModel):
    """Answer of `GET /api/v1/deliveries`."""

    deliveries: list[DeliverySummary]
    enabled: bool = Field(description="false when DELIVERY_LOG_DAYS turns the log off")
    dropped: int = Field(
        default=0, description="deliveries left out of the log under load (it keeps a sample)"
    )


_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (models.DeploymentRequest, "validation"),
    (models.Deployment, "serialization"),
    (models.DeploymentList, "serialization"),
    (models.ErrorBody, "serialization"),
    (DeployKeyCreated, "serialization"),
    (Health, "serialization"),
    (Readiness, "serialization"),
    (WebhookAnswer, "serialization"),
    (DeliveryList, "serialization"),
    (DeliveryDetail, "serialization"),
    (models.EnvironmentList, "serialization"),
    (models.ReleaseList, "serialization"),
    (models.RollbackRequest, "validation"),
    *release_paths.MODELS,
    *check_paths.MODELS,
    *access_paths.MODELS,
    *gate_paths.MODELS,
]


_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# After the authority: a path, query or fragment without spaces or control characters.
_REST = r"(?:[/?#][^\x00-\x20\x7f-\x9f]*)?"
_ANY_CALLBACK = (
    r"^https?://(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])"
    + f"(?::{_PORT})?{_REST}$"
)
_INT64 = 2**63 - 1


def _host_pattern(host: str) -> str:
    # Host names compare case-insensitively (ECMA patterns have no flags).
    return "".join(
        f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in host.lower()
    )


def callback_pattern(allowed: tuple[str, ...], default_url: str | None) -> str:
    """The callback URLs this server accepts, as a pattern (docs/configuration.md)."""
    origins: list[str] = []
    if allowed:
        for entry in allowed:
            parts = urlsplit("//" + entry)
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            port = str(parts.port or "")
            if not port:
                origins.append(f"https?://{_host_pattern(host)}(?::{_PORT})?")
                continue
            origins.append(f"https?://{_host_pattern(host)}:{port}")
            if port in ("80", "443"):
                scheme = "http" if port == "80" else "https"
                origins.append(f"{scheme}://{_host_pattern(host)}")
    elif default_url is not None:
        parts = urlsplit(default_url)
        effective = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        default_port = effective == (443 if parts.scheme == "https" else 80)
        optional = "?" if default_port else ""
        origins.append(f"{parts.scheme}://{_host_pattern(host)}(?::{effective}){optional}")
    else:
        return "^(?!)$"  # no callback URL is accepted without the settings
    return f"^(?:{'|'.join(origins)}){_REST}$"


def components(allowed: tuple[str, ...] | None, default_url: str | None) -> dict[str, Any]:
    """Every model's schema, with their nested `$defs` collected as components.

    `allowed`/`default_url`: this server's CALLBACK_ALLOWED_HOSTS and ORCHESTRATOR_CALLBACK_URL
    (None: the generic description, any well-formed http(s) URL).
    """
    _, top = models_json_schema(_MODELS, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = top.get("$defs", {})
    request = schemas["DeploymentRequest"]["properties"]
    # Field validators are code, invisible to the JSON schema: state their rules here.
    request["repository"].update(
        pattern=validation.REPOSITORY_PATTERN,
        maxLength=201,
        description="owner/name: GitHub's characters [A-Za-z0-9._-], neither part . or ..",
    )
    request["workflow"].update(pattern=validation.WORKFLOW_PATTERN, maxLength=255)
    request["ref"]["anyOf"][0].update(pattern=validation.REF_PATTERN, maxLength=validation.REF_MAX)
    request["inputs"]["additionalProperties"] = {
        "anyOf": [
            {"type": "string"},
            {"type": "number", "minimum": -_INT64, "maximum": _INT64},
            {"type": "boolean"},
        ]
    }
    request["metadata"].update(
        maxProperties=validation.METADATA_MAX_KEYS,
        propertyNames={"pattern": validation.METADATA_KEY_PATTERN},
        additionalProperties={
            "type": "string",
            "maxLength": validation.METADATA_MAX_VALUE,
            "pattern": "^[^\\x00]*$",
        },
    )
    callback = request["callback_url"]["anyOf"][0]
    if allowed is None:
        callback["pattern"] = _ANY_CALLBACK
        callback["description"] = (
            "http(s), no user or password; allowed when its scheme, host and port equal "
            "ORCHESTRATOR_CALLBACK_URL's, or its host (and port) is in CALLBACK_ALLOWED_HOSTS"
        )
    else:
        callback["pattern"] = callback_pattern(allowed, default_url)
        callback["description"] = "an http(s) URL this server may call back (its settings)"
    # A rollback's callback_url and metadata follow the same rules as a deployment's.
    rollback = schemas["RollbackRequest"]["properties"]
    for name in ("callback_url", "metadata"):
        rollback[name] = copy.deepcopy(request[name])
    return schemas
