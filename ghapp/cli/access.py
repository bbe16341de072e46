"""`ghapp tokens create|list|revoke|rotate` and `ghapp audit [--verify]`: on the server's
database (DATABASE_URL), acting as `cli:$USER` (docs/access.md)."""

from __future__ import annotations

import argparse
import re

DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """`90d`, `1h`, `30m`, `45s` in seconds (argparse type)."""
    found = DURATION.fullmatch(text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90d, 24h, 30m")
    return float(int(found.group(1)) * UNIT[found.group(2)])


def _globs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `tokens` and `audit` subcommands."""
    tokens = commands.add_parser(
        "tokens", help="scoped API tokens: create, list, revoke, rotate (docs/access.md)"
    )
    actions = tokens.add_subparsers(dest="tokens_action", required=True)
    create = actions.add_parser("create", help="make a token and print it once")
    create.add_argument("name")
    create.add_argument("--repos", type=_globs, default=["*"], help="repository globs (*)")
    create.add_argument("--environments", type=_globs, default=["*"], help="environment globs")
    create.add_argument("--scopes", type=_globs, default=["read"],
                        help="deploy,rollback,cancel,read,override,admin (read)")
    create.add_argument("--expires", type=seconds, default=None, help="e.g. 90d (never)")
    actions.add_parser("list", help="every token (name, first 10 characters, grants, dates)")
    revoke = actions.add_parser("revoke", help="revoke a token (refused within 1 s)")
    revoke.add_argument("name")
    rotate = actions.add_parser("rotate", help="a new value; the old stays valid --overlap")
    rotate.add_argument("name")
    rotate.add_argument("--overlap", type=seconds, default=3600.0, help="default 1h")
    tokens.set_defaults(func=_run_tokens)
    audit = commands.add_parser(
        "audit", help="the audit trail, newest first; --verify checks its hash chain"
    )
    audit.add_argument("--since", type=seconds, default=None, help="e.g. 24h")
    audit.add_argument("--actor", help="e.g. token:ci")
    audit.add_argument("--action", help="e.g. deployment.create")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--verify", action="store_true",
                       help="exit 0 when the chain holds, 1 naming the first row that breaks it")
    audit.set_defaults(func=_run_audit)



# The parser is built for every command (`ghapp serve` too): what the commands need loads
# only when one of them runs.
def _run_tokens(args: argparse.Namespace) -> int:
    from ghapp.cli.access_commands import run_tokens

    return run_tokens(args)


def _run_audit(args: argparse.Namespace) -> int:
    from ghapp.cli.access_commands import run_audit

    return run_audit(args)
