"""`ghapp replay ID|FILE`: sign a payload with WEBHOOK_SECRET and post it to a running server."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ghapp.cli.common import CommandError, fail
from ghapp.cli.deliveries import fetch_local
from ghapp.cli.failures import check_url, reason
from ghapp.config import SettingsError, load_settings
from ghapp.core.signatures import header, hub_signature

# Headers worth carrying over from a saved delivery; the delivery id and signatures are new.
KEPT_HEADERS = (
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
)


@dataclass(frozen=True)
class Replayable:
    """What to send: the exact body, its event, and headers kept from the original."""

    body: bytes
    event: str | None
    headers: dict[str, str]


def _headers(saved: Any) -> dict[str, str]:
    """A saved delivery's headers, as text."""
    return {str(key): str(value) for key, value in dict(saved or {}).items()}


def _kept(headers: dict[str, str]) -> dict[str, str]:
    found = {name: header(headers, name) for name in KEPT_HEADERS}
    return {name: value for name, value in found.items() if value}


def from_record(record: dict[str, Any], origin: str) -> Replayable:
    """The body and event of a saved delivery: ghapp's local log, or GitHub's `show --json`."""
    request = record.get("request")
    if isinstance(request, dict) and "payload" in request:
        # GitHub's hook-delivery detail keeps the payload parsed, not the bytes it sent.
        headers = _headers(request.get("headers"))
        body = json.dumps(request["payload"], separators=(",", ":")).encode()
        return Replayable(body, header(headers, "X-GitHub-Event"), _kept(headers))
    headers = _headers(record.get("headers"))
    if record.get("truncated"):
        raise CommandError(f"{origin}: the log kept only part of this body, it cannot be replayed")
    if isinstance(record.get("body"), str):
        body = record["body"].encode("utf-8")
    elif isinstance(record.get("body_base64"), str):
        body = base64.b64decode(record["body_base64"])
    else:
        raise CommandError(f"{origin}: a saved delivery with no body")
    return Replayable(body, header(headers, "X-GitHub-Event"), _kept(headers))


def from_file(path: Path) -> Replayable:
    """A file: a saved delivery record (with headers), or a plain payload sent byte for byte."""
    raw = path.read_bytes()
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise CommandError(f"{path}: not JSON", 2) from None
    is_record = isinstance(parsed, dict) and (
        isinstance(parsed.get("request"), dict)
        or (
            isinstance(parsed.get("headers"), dict)
            and ("body" in parsed or "body_base64" in parsed)
        )
    )
    if is_record:
        return from_record(parsed, str(path))
    return Replayable(raw, None, {})


async def post(url: str, secret: str, item: Replayable, event: str) -> tuple[str, int, str]:
    """POST it signed, under a new delivery id; (delivery id, status, answer text)."""
    delivery_id = str(uuid.uuid4())
    headers = {
        **item.headers,
        "Content-Type": "application/json",
        "User-Agent": "ghapp-replay",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": hub_signature(item.body, secret),
    }
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, data=item.body, headers=headers) as response,
        ):
            return delivery_id, response.status, await response.text()
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CommandError(
            f"nothing answers at {url}: {reason(exc)} (start the server with `ghapp serve`,"
            " or pass --url)",
            2,
        ) from None


async def _replay(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.webhook_secret:
        raise SettingsError("WEBHOOK_SECRET: required to sign the replayed delivery")
    url = check_url(args.url) if args.url else (
        f"http://127.0.0.1:{settings.port}{settings.webhook_path}"
    )
    path = Path(args.target)
    if path.is_file():  # noqa: ASYNC240 - a command line, nothing else runs on this loop
        item = from_file(path)
    else:
        if not settings.orchestrator_token:
            raise SettingsError("ORCHESTRATOR_TOKEN: required to read the server's delivery log")
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        try:
            record = await fetch_local(
                origin, settings.orchestrator_token, f"/api/v1/deliveries/{args.target}"
            )
        except CommandError as exc:
            if str(exc).startswith("not found"):
                raise CommandError(
                    f"{args.target}: no such file, and no such delivery in the server's log"
                ) from None
            raise
        item = from_record(record, args.target)
    event = args.event or item.event
    if not event:
        raise CommandError("--event is needed: the file is a plain payload with no headers", 2)
    delivery_id, status, answer = await post(url, settings.webhook_secret[0], item, event)
    print(f"Replayed {event} ({len(item.body)} bytes) to {url} as delivery {delivery_id}")
    print(f"HTTP {status} {answer}")
    return 0 if 200 <= status < 300 else 1


def run(args: argparse.Namespace) -> int:
    """Run `ghapp replay`."""
    try:
        return asyncio.run(_replay(args))
    except CommandError as exc:
        return fail(str(exc), exc.code)
