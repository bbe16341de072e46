"""The GitHub App manifest (`manifest/app.yml`): what the App asks for, read by `ghapp setup`
(which posts it to GitHub) and by the set-up checks (which compare an installation with it).

`manifest/app.yml` at the repository root is the source. A checkout or an editable install reads
it from there; an installed wheel has no repository root, so `BUILTIN` carries the same content
(a test keeps the two equal) and is used when the file is absent.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

MANIFEST_FILE = Path(__file__).resolve().parents[1] / "manifest" / "app.yml"

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
    "callback_urls": ["https://ghapp.example.com/auth/github/callback"],
    "public": False,
    "default_permissions": {
        "actions": "write",
        "contents": "read",
        "deployments": "write",
        "metadata": "read",
        "secrets": "write",
        "checks": "read",
        "members": "read",
    },
    "default_events": [
        "workflow_run",
        "workflow_job",
        "deployment_status",
        "deployment_protection_rule",
        "deployment_review",
    ],
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


def permissions() -> dict[str, str]:
    """The repository and organisation permissions the App asks for (`default_permissions`)."""
    asked = load_manifest().get("default_permissions") or {}
    return {str(name): str(level) for name, level in asked.items()}
