"""`ghapp gate ...`: its parser. The parser is built for every command (`ghapp serve` too), so
what the actions need (aiohttp, the GitHub client) is imported only when one runs."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ghapp gate` and its actions."""
    gate = commands.add_parser(
        "gate", help="the gate: environments without ghapp's rule, and its decisions"
    )
    actions = gate.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="each environment of a repository: ghapp's rule, reviewers, wait timer"
    )
    check.add_argument("repository", help="OWNER/REPO")
    decisions = actions.add_parser("decisions", help="the gate's decisions, newest first")
    decisions.add_argument("--held", action="store_true", help="only the held ones")
    decisions.add_argument("--repository", help="only this OWNER/REPO")
    decisions.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    decisions.add_argument("--json", action="store_true", help="print JSON")
    approve = actions.add_parser("approve", help="approve a held decision (the run starts)")
    reject = actions.add_parser("reject", help="reject a held decision (the run ends)")
    for sub in (approve, reject):
        sub.add_argument("id", help="the decision's id (gate_...)")
    for sub in (decisions, approve, reject):
        sub.add_argument("--url", help="the server (default http://127.0.0.1:$PORT)")
    for sub in (check, decisions, approve, reject):
        sub.set_defaults(func=_run)



def _run(args: argparse.Namespace) -> int:
    from ghapp.cli.gate_commands import run

    return run(args)
