"""`ghapp deliveries ...`: GitHub's record of webhook deliveries, and this server's own log."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
import gidgethub

from ghapp.cli.common import CommandError, app_settings, fail, github_client, print_table
from ghapp.cli.failures import check_url, reason
from ghapp.config import SettingsError, load_settings
from ghapp.core.untrusted import clean
from ghapp.github.client import GitHubUnavailable
from ghapp.github.deliveries import (
    HookDeliveries,
    failed_guids,
    is_success,
    parse_since,
    redeliver_failed,
)


def run(args: argparse.Namespace) -> int:
    """Run one `ghapp deliveries` subcommand."""
    actions: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "list": _list,
        "show": _show,
        "redeliver": _redeliver,
        "redeliver-failed": _redeliver_failed,
        "local": _local,
    }
    try:
        return asyncio.run(actions[args.action](args))
    except CommandError as exc:
        return fail(str(exc), exc.code)


def _since(text: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_since(text)
    except ValueError as exc:
        raise CommandError(f"--since: {exc}", 2) from None


async def _github(work: Callable[[HookDeliveries], Awaitable[int]]) -> int:
    async with github_client(app_settings()) as github:
        try:
            return await work(HookDeliveries(github))
        except GitHubUnavailable as exc:
            # Nothing could be asked of GitHub: as for any server out of reach, status 2.
            raise CommandError(str(exc), 2) from None
        except gidgethub.BadRequest as exc:
            status = int(exc.status_code)
            if status == 401:
                raise CommandError(
                    "GitHub refused the App's credentials (401): check APP_ID and the private key"
                ) from None
            raise CommandError(f"GitHub answered {status}: {exc}") from None


def _status(item: dict[str, Any]) -> str:
    code = int(item.get("status_code") or 0)
    text = str(item.get("status") or "")
    return f"{code} {text}" if code else text


async def _list(args: argparse.Namespace) -> int:
    since = _since(args.since)

    async def work(hooks: HookDeliveries) -> int:
        items = await hooks.list(since=since)
        if args.event:
            items = [i for i in items if i.get("event") == args.event]
        if args.failed:
            failed = failed_guids(items, since)
            if args.json:
                print(json.dumps([f.as_json() for f in failed], indent=2))
                return 0
            rows = [
                [
                    f.guid,
                    f.event,
                    f.action or "",
                    _status({"status_code": f.last_status_code, "status": f.last_status}),
                    f.delivered_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    str(f.attempts),
                    str(f.redeliver_id),
                ]
                for f in failed
            ]
            headers = ["GUID", "EVENT", "ACTION", "LAST STATUS", "TIME", "ATTEMPTS", "LATEST ID"]
            print_table(headers, rows)
            print(f"{len(failed)} guid(s) with no successful attempt since {_stamp(since)}")
            if failed:
                print(f"Redeliver them: ghapp deliveries redeliver-failed --since {args.since}")
            return 0
        if args.json:
            print(json.dumps(items, indent=2))
            return 0
        rows = [
            [
                str(i["id"]),
                str(i["delivered_at"]),
                str(i["guid"]),
                str(i.get("event") or ""),
                str(i.get("action") or ""),
                _status(i),
                "yes" if i.get("redelivery") else "",
            ]
            for i in items
        ]
        print_table(["ID", "TIME", "GUID", "EVENT", "ACTION", "STATUS", "REDELIVERY"], rows)
        failures = sum(1 for i in items if not is_success(i))
        print(f"{len(items)} attempt(s) since {_stamp(since)}, {failures} not answered with 2xx")
        return 0

    return await _github(work)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _delivery_id(text: str) -> int:
    if not text.isdigit():
        raise CommandError(f"{text!r} is not a delivery id (the numeric ID column of list)", 2)
    return int(text)


async def _show(args: argparse.Namespace) -> int:
    delivery_id = _delivery_id(args.id)

    async def work(hooks: HookDeliveries) -> int:
        detail = await hooks.get(delivery_id)
        if args.json:
            print(json.dumps(detail, indent=2))
            return 0
        _print_detail(detail)
        return 0

    return await _github(work)


def _print_detail(detail: dict[str, Any]) -> None:
    out = io.StringIO()
    _write_detail(detail, out)
    # Headers and bodies are whatever the sender wrote: cleaned before they reach a terminal.
    sys.stdout.write(clean(out.getvalue()))


def _write_detail(detail: dict[str, Any], out: TextIO) -> None:
    name = detail.get("event") or "?"
    if detail.get("action"):
        name += f".{detail['action']}"
    out.write(f"Delivery {detail['id']}  guid {detail['guid']}  {name}\n")
    redelivery = "yes" if detail.get("redelivery") else "no"
    out.write(
        f"Delivered {detail.get('delivered_at')} to {detail.get('url') or '?'} "
        f"(redelivery: {redelivery}, {detail.get('duration', 0)} s)\n"
    )
    out.write(f"Result: {_status(detail)}\n")
    request = detail.get("request") or {}
    response = detail.get("response") or {}
    out.write("\nRequest headers:\n")
    for key, value in (request.get("headers") or {}).items():
        out.write(f"  {key}: {value}\n")
    out.write("\nRequest payload:\n")
    out.write(json.dumps(request.get("payload"), indent=2) + "\n")
    out.write("\nResponse headers:\n")
    for key, value in (response.get("headers") or {}).items():
        out.write(f"  {key}: {value}\n")
    out.write("\nResponse body:\n")
    body = response.get("payload")
    out.write(("(none: the App did not answer)" if body is None else str(body)) + "\n")


async def _redeliver(args: argparse.Namespace) -> int:
    delivery_id = _delivery_id(args.id)

    async def work(hooks: HookDeliveries) -> int:
        try:
            await hooks.redeliver(delivery_id)
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) == 404:
                raise CommandError(f"GitHub has no delivery {delivery_id}") from None
            raise
        print(f"Redelivery of {delivery_id} requested; GitHub sends it again shortly, same guid.")
        return 0

    return await _github(work)


async def _redeliver_failed(args: argparse.Namespace) -> int:
    since = _since(args.since)

    async def work(hooks: HookDeliveries) -> int:
        report = await redeliver_failed(hooks, since, dry_run=args.dry_run, limit=args.max)
        left = report.skipped + report.held
        chosen = [f for f in report.failed if f not in left] if args.dry_run else report.redelivered
        if args.json:
            body = {
                "since": _stamp(since),
                "dry_run": args.dry_run,
                "failed": [f.as_json() for f in report.failed],
                "redelivered": [f.as_json() for f in report.redelivered],
                "errors": [{**f.as_json(), "error": e} for f, e in report.errors],
                "summary": report.summary(),
            }
            print(json.dumps(body, indent=2))
        else:
            verb = "would redeliver" if args.dry_run else "redelivered"
            for item in chosen:
                label = item.event + (f".{item.action}" if item.action else "")
                print(clean(f"{verb} {item.guid} {label} (attempt {item.redeliver_id})"))
            for item, error in report.errors:
                print(clean(f"failed to redeliver {item.guid}: {error}"))
            print(clean(report.summary()))
        return 1 if report.errors else 0

    return await _github(work)


# --- the local delivery log of a running server -----------------------------------------


def _server(url: str | None) -> tuple[str, str]:
    base = check_url(url) if url is not None else None
    settings = load_settings()
    if not settings.orchestrator_token:
        raise SettingsError("ORCHESTRATOR_TOKEN: required to read the server's delivery log")
    return base or f"http://127.0.0.1:{settings.port}", settings.orchestrator_token


async def fetch_local(
    base: str, token: str, path: str, params: dict[str, str] | None = None
) -> Any:
    """GET a path of a running server's API with the orchestrator token; the JSON answer."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(base + path, params=params, headers=headers) as response,
        ):
            if response.status == 401:
                raise CommandError(f"ORCHESTRATOR_TOKEN: the server at {base} refused it (401)")
            if response.status == 404:
                raise CommandError(f"not found at {base}{path}")
            if response.status != 200:
                raise CommandError(f"{base}{path} answered {response.status}")
            return await response.json()
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise CommandError(
            f"no ghapp server answers at {base}: {reason(exc)} (start one with `ghapp serve`,"
            " or pass --url)",
            2,
        ) from None


async def _local(args: argparse.Namespace) -> int:
    base, token = _server(args.url)
    if args.id:
        detail = await fetch_local(base, token, f"/api/v1/deliveries/{args.id}")
        if args.json:
            print(json.dumps(detail, indent=2))
        else:
            _print_local_detail(detail)
        return 0
    params = {"limit": str(args.limit)}
    if args.event:
        params["event"] = args.event
    if args.outcome:
        params["outcome"] = args.outcome
    answer = await fetch_local(base, token, "/api/v1/deliveries", params)
    found = answer.get("deliveries") or []
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not answer.get("enabled", True):
        print("The delivery log is off on this server (DELIVERY_LOG_DAYS=0).")
        return 0
    rows = [
        [
            d["id"],
            d["received_at"],
            d.get("event") or "",
            d.get("action") or "",
            d["signature"],
            str(d["status"]),
            d["outcome"],
            f"{d['duration_ms']:.1f}",
            d.get("delivery_id") or "",
        ]
        for d in found
    ]
    headers = ["ID", "RECEIVED", "EVENT", "ACTION", "SIGNATURE", "STATUS", "OUTCOME", "MS", "GUID"]
    print_table(headers, rows)
    print(f"{len(found)} delivery(ies), newest first; one in full: ghapp deliveries local ID")
    if answer.get("dropped"):
        print(f"({answer['dropped']} more received but not kept: the log samples under load)")
    return 0


def _print_local_detail(detail: dict[str, Any]) -> None:
    out = io.StringIO()
    _write_local_detail(detail, out)
    sys.stdout.write(clean(out.getvalue()))


def _write_local_detail(detail: dict[str, Any], out: TextIO) -> None:
    name = (detail.get("event") or "?") + (f".{detail['action']}" if detail.get("action") else "")
    out.write(f"Delivery {detail['id']}  guid {detail.get('delivery_id') or '-'}  {name}\n")
    out.write(
        f"Received {detail['received_at']}: signature {detail['signature']}, answered "
        f"{detail['status']} {detail['outcome']} in {detail['duration_ms']:.1f} ms\n"
    )
    out.write("\nHeaders:\n")
    for key, value in (detail.get("headers") or {}).items():
        out.write(f"  {key}: {value}\n")
    out.write(f"\nBody ({detail['body_size']} bytes")
    out.write(", truncated in the log):\n" if detail.get("truncated") else "):\n")
    body = detail.get("body")
    if body is None:
        out.write("(not UTF-8; base64) " + str(detail.get("body_base64")) + "\n")
        return
    try:
        out.write(json.dumps(json.loads(body), indent=2) + "\n")
    except ValueError:
        out.write(body + "\n")
