"""The GitHub App manifest (`manifest/app.yml`), as `ghapp setup` posts it.

`manifest/app.yml` at the repository root is the source. A checkout or an editable install reads
it from there; an installed wheel has no repository root, so `BUILTIN` carries the same content
(a test keeps the two equal) and is used when the file is absent.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

MANIFEST_FILE = Path(__file__).resolve().parents[2] / "manifest" / "app.yml"

BUILTIN: dict[str, Any] = {
    "name": "ghapp",
    "url": "https://ghapp.example.com",
    "description": (
        "Deploys a repository on request: dispatches its deploy.yml workflow, watches the run "
        "and reports a verdict (deployed URL, or the failing job, step and log lines) to the "
        "caller."
    ),
    "hook_attributes": {"url": "https://ghapp.example.com/api/github/webhooks", "active": True},
    "redirect_url": "http://127.0.0.1:3001/callback",
    "public": False,
    "default_permissions": {
        "actions": "write",
        "contents": "read",
        "deployments": "read",
        "metadata": "read",
        "secrets": "write",
        "checks": "read",
    },
    "default_events": ["workflow_run", "workflow_job", "deployment_status"],
}


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """The manifest from `path`, else `manifest/app.yml`, else the built-in copy."""
    source = path or (MANIFEST_FILE if MANIFEST_FILE.is_file() else None)
    if source is None:
        return copy.deepcopy(BUILTIN)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a YAML mapping")
    return data


def for_setup(
    manifest: dict[str, Any], *, webhook_url: str, redirect_url: str, name: str | None = None
) -> dict[str, Any]:
    """The manifest with this installation's URLs (and name) filled in."""
    filled = copy.deepcopy(manifest)
    parts = urlsplit(webhook_url)
    filled["url"] = f"{parts.scheme}://{parts.netloc}"
    hook = dict(filled.get("hook_attributes") or {})
    hook["url"] = webhook_url
    hook.setdefault("active", True)
    filled["hook_attributes"] = hook
    filled["redirect_url"] = redirect_url
    if name:
        filled["name"] = name
    return filled
