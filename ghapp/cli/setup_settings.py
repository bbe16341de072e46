"""The settings `ghapp setup` writes besides the App's own: the secrets `ghapp serve` needs
(generated once, never replaced) and the orchestrator's callback URL (asked for, or given)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ghapp.config import MIN_SECRET

# Generated when neither the env file nor the environment sets them.
GENERATED = ("ORCHESTRATOR_TOKEN", "CALLBACK_SECRET")
CLIENT_NOTE = (
    "GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET: the App's OAuth client, used only to sign in to "
    "the operator page with GitHub (PAGE_AUTH=github)"
)


def server_values(
    existing: Mapping[str, str], environ: Mapping[str, str], callback_url: str | None
) -> tuple[dict[str, str], list[str], list[str]]:
    """What `ghapp serve` needs besides the App's settings: (values to write, names generated,
    warnings). Secrets already set (in the file or the environment) are kept, never replaced."""
    values: dict[str, str] = {}
    generated, warnings = [], []
    for name in GENERATED:
        current = existing.get(name) or environ.get(name)
        if not current:
            values[name] = secrets.token_hex(32)
            generated.append(name)
        elif len(current) < MIN_SECRET:
            warnings.append(
                f"{name} (kept) has {len(current)} characters: ghapp serve needs at least "
                f"{MIN_SECRET} (e.g. openssl rand -hex 32)"
            )
    if callback_url is not None:
        values["ORCHESTRATOR_CALLBACK_URL"] = callback_url
    return values, generated, warnings


def ask_callback_url(read: Callable[[str], str] = input) -> str | None:
    """Ask for the orchestrator's callback URL until it is an http(s) URL; None if skipped."""
    while True:
        try:
            answer = read(
                "The orchestrator's callback URL, where verdicts go (ORCHESTRATOR_CALLBACK_URL; "
                "empty: set it later): "
            ).strip()
        except EOFError:
            return None
        if not answer:
            return None
        parts = urlsplit(answer)
        if parts.scheme in ("http", "https") and parts.hostname:
            return answer.rstrip("/")
        print(f"{answer!r} is not an http(s) URL")
