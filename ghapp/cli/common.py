"""What the `ghapp` subcommands share: settings, the GitHub client, errors and tables."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp

from ghapp import keepalive
from ghapp.config import Settings, SettingsError, check_key_loads, load_settings
from ghapp.core.untrusted import clean
from ghapp.github.client import GitHubClient


class CommandError(Exception):
    """A command failed in a way the user can act on; the message is printed as one line."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def app_settings() -> Settings:
    """Settings with what the App-authenticated commands need: APP_ID and a key that loads."""
    settings = load_settings()
    if not settings.app_id:
        raise SettingsError("APP_ID: required (the GitHub App's id)")
    check_key_loads(settings.app_private_key())
    return settings


@contextlib.asynccontextmanager
async def github_client(settings: Settings) -> AsyncIterator[GitHubClient]:
    """A GitHub client with the App's credentials, for one command."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with keepalive.session(timeout=timeout) as session:
        yield GitHubClient(
            session,
            app_id=settings.app_id or "",
            private_key=settings.app_private_key(),
            api_url=settings.github_api_url,
        )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as left-aligned columns under upper-case headers, every cell cleaned."""
    # Cells come from GitHub and from webhook senders: one line each, no control character.
    rows = [[" ".join(clean(cell).split()) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(headers), *rows]:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def fail(message: str, code: int = 1) -> int:
    """Print `ghapp: message` (cleaned: it may quote GitHub) on stderr; the exit code."""
    print(clean(f"ghapp: {message}"), file=sys.stderr)
    return code
