"""What `ghapp tokens ...` and `ghapp audit` do: on the server's database (DATABASE_URL),
acting as `cli:$USER` (docs/access.md); their parser is `ghapp.cli.access`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ghapp.store import SqlStore

def cli_actor() -> str:
    """Who a command run from a shell acts as: `cli:$USER`."""
    import getpass  # the parser is built by `ghapp serve` too, which never needs it

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _with_store(work: Callable[[SqlStore], Awaitable[int]]) -> int:
    from ghapp.config import load_settings
    from ghapp.store import SqlStore

    settings = load_settings()

    async def go() -> int:
        store = SqlStore(settings.database_url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def run_tokens(args: argparse.Namespace) -> int:
    """`ghapp tokens ...`."""
    return _with_store(lambda store: _tokens(store, args))


async def _tokens(store: SqlStore, args: argparse.Namespace) -> int:
    from ghapp.core.scopes import ADMIN
    from ghapp.store.access import TokenNameTaken
    from ghapp.work.access import Auditor, issue_token, public_token, rotate_token

    auditor = Auditor(store)
    who = cli_actor()
    if args.tokens_action == "list":
        for row in await store.list_tokens():
            shown = public_token(row)
            print(
                f"{shown['name']}\t{shown['prefix']}\t{','.join(shown['scopes'])}\t"
                f"repos={','.join(shown['repositories'])}\t"
                f"environments={','.join(shown['environments'])}\t"
                f"created={shown['created_at']}\tlast_used={shown['last_used_at'] or '-'}\t"
                f"expires={shown['expires_at'] or 'never'}"
            )
        return 0
    if args.tokens_action == "create":
        try:
            issued = await issue_token(
                store, ADMIN, name=args.name, repositories=args.repos,
                environments=args.environments, scope_names=args.scopes,
                expires_in_days=args.expires / 86400 if args.expires else None, created_by=who,
            )
        except TokenNameTaken:
            print(f"ghapp: a token named {args.name!r} exists", file=sys.stderr)
            await auditor.record(actor=who, action="token.create", target=args.name,
                                 outcome="409")
            return 1
        except (ValueError, PermissionError) as exc:
            print(f"ghapp: {exc}", file=sys.stderr)
            await auditor.record(actor=who, action="token.create", target=args.name,
                                 outcome="422", reason=str(exc))
            return 2
        await auditor.record(actor=who, action="token.create", target=args.name, outcome="201")
        print(issued.token)
        print("(shown this once: store it now)", file=sys.stderr)
        return 0
    if args.tokens_action == "rotate":
        rotated = await rotate_token(store, args.name, args.overlap)
        await auditor.record(actor=who, action="token.rotate", target=args.name,
                             outcome="200" if rotated else "404")
        if rotated is None:
            print(f"ghapp: no token named {args.name!r}", file=sys.stderr)
            return 1
        print(rotated.token)
        return 0
    gone = await store.revoke_token(args.name)
    await auditor.record(actor=who, action="token.revoke", target=args.name,
                         outcome="204" if gone else "404")
    if not gone:
        print(f"ghapp: no token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.name}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """`ghapp audit [--verify]`."""
    return _with_store(lambda store: _audit(store, args))


async def _audit(store: SqlStore, args: argparse.Namespace) -> int:
    from ghapp.core.untrusted import clean
    from ghapp.work.access import verify_audit

    if args.verify:
        broken = await verify_audit(store)
        if broken is None:
            print("audit chain holds")
            return 0
        print(f"audit chain broken at row {broken.row_id}: {broken.why}")
        return 1
    since = time.time() - args.since if args.since else None
    rows: list[dict[str, Any]] = await store.audit_entries(
        actor=args.actor, action=args.action, since=since, limit=args.limit
    )
    for row in rows:
        # Fields a client chose (its request id, a reason) are printed as clean text.
        print(clean(json.dumps(row, sort_keys=True)))
    return 0
