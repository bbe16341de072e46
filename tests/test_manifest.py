"""The App manifest asks for exactly the permissions and events of docs/reference/manifest.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "manifest" / "app.yml"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    """The parsed manifest."""
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_permissions_are_exactly_the_designed_ones(manifest: dict[str, Any]) -> None:
    """Least privilege: no permission more, none less."""
    assert manifest["default_permissions"] == {
        "actions": "write",
        "contents": "read",
        "deployments": "write",
        "metadata": "read",
        "secrets": "write",
        "checks": "read",
        # organization: team memberships of people signing in with GitHub (PAGE_AUTH=github)
        "members": "read",
    }


def test_setup_fills_the_sign_in_callback_url(manifest: dict[str, Any]) -> None:
    from ghapp.cli.manifest import for_setup

    hook = "https://deploy.acme.test/api/github/webhooks"
    filled = for_setup(manifest, webhook_url=hook, redirect_url="http://127.0.0.1:3001/callback")
    assert filled["callback_urls"] == ["https://deploy.acme.test/auth/github/callback"]
    other = for_setup(manifest, webhook_url=hook, redirect_url="http://127.0.0.1:3001/callback",
                      public_url="https://ops.acme.test/")
    assert other["callback_urls"] == ["https://ops.acme.test/auth/github/callback"]


def test_events_are_exactly_the_designed_ones(manifest: dict[str, Any]) -> None:
    """Installation events come to every App, so only these are subscribed."""
    events = manifest["default_events"]
    assert len(events) == len(set(events))
    assert set(events) == {
        "workflow_run",
        "workflow_job",
        "deployment_status",
        "deployment_protection_rule",
        "deployment_review",
    }


def test_app_is_private_and_named(manifest: dict[str, Any]) -> None:
    """Private (public is the YAML boolean false, not a string) and named ghapp."""
    assert manifest["public"] is False
    assert manifest["name"] == "ghapp"
    assert isinstance(manifest["description"], str) and manifest["description"].strip()


def test_webhook_points_at_the_webhook_path(manifest: dict[str, Any]) -> None:
    """Webhooks are active and go to the default WEBHOOK_PATH."""
    hook = manifest["hook_attributes"]
    assert hook["active"] is True
    assert hook["url"].startswith("https://")
    assert hook["url"].endswith("/api/github/webhooks")


def test_urls_are_present(manifest: dict[str, Any]) -> None:
    """GitHub requires url; the manifest flow needs redirect_url to hand back the code."""
    assert manifest["url"].startswith(("https://", "http://"))
    assert manifest["redirect_url"].startswith(("https://", "http://"))


def test_only_known_manifest_fields(manifest: dict[str, Any]) -> None:
    """A misspelt field would be silently ignored by GitHub."""
    known = {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
    assert set(manifest) <= known
