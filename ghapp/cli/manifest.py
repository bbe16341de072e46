"""The GitHub App manifest as `ghapp setup` posts it: `manifest/app.yml` (read by
`ghapp.manifest`) with this installation's URLs filled in."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

from ghapp.core.signin import CALLBACK_PATH
from ghapp.manifest import BUILTIN, MANIFEST_FILE, load_manifest

__all__ = ["BUILTIN", "MANIFEST_FILE", "for_setup", "load_manifest"]


def for_setup(
    manifest: dict[str, Any],
    *,
    webhook_url: str,
    redirect_url: str,
    name: str | None = None,
    public_url: str | None = None,
) -> dict[str, Any]:
    """The manifest with this installation's URLs (and name) filled in.

    The sign-in callback is `public_url` (default: the webhook URL's origin) + its path.
    """
    filled = copy.deepcopy(manifest)
    parts = urlsplit(webhook_url)
    filled["url"] = f"{parts.scheme}://{parts.netloc}"
    hook = dict(filled.get("hook_attributes") or {})
    hook["url"] = webhook_url
    hook.setdefault("active", True)
    filled["hook_attributes"] = hook
    filled["redirect_url"] = redirect_url
    public = (public_url or filled["url"]).rstrip("/")
    filled["callback_urls"] = [f"{public}{CALLBACK_PATH}"]
    if name:
        filled["name"] = name
    return filled
