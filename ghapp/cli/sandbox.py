"""`ghapp sandbox`: a long-lived local twin of ghapp and GitHub for developing an orchestrator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from ghapp.core.untrusted import clean

if TYPE_CHECKING:
    from ghapp.simulator.receiver import CallbackReceiver
    from ghapp.simulator.scenarios import ScenarioBook

HELP = """\
The GitHub simulator and ghapp on fixed ports; any repository name is installed on first use
with a deploy.yml that follows its scenario (default: succeed after 2 s). Prints the settings a
client needs as NAME=value lines, ready for a .env. Scenarios: --scenarios FILE (YAML, owner/repo
or default -> scenario) and PUT/GET/DELETE $GITHUB_API_URL/sandbox/scenarios/OWNER/REPO (JSON).
SIGTERM or Ctrl-C stops it (exit status 0)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `ghapp sandbox` and its options."""
    sandbox = commands.add_parser(
        "sandbox", help="ghapp and a simulated GitHub on fixed ports, for orchestrator work",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox.add_argument("--port", type=int, default=3000, help="ghapp's port (default 3000)")
    sandbox.add_argument(
        "--github-port", type=int, default=3100, help="the simulated GitHub's port (default 3100)"
    )
    sandbox.add_argument(
        "--callback-url", help="where verdicts go (ORCHESTRATOR_CALLBACK_URL; default: printed)"
    )
    sandbox.add_argument(
        "--scenarios", metavar="FILE", help="YAML: owner/repo or default -> scenario"
    )
    sandbox.add_argument(
        "--database-url", help="DATABASE_URL (default: SQLite in a temporary directory)"
    )
    sandbox.add_argument(
        "--github-user", metavar="LOGIN",
        help="PAGE_AUTH=github: the user the simulator's authorize page signs in",
    )
    sandbox.add_argument(
        "--github-teams", metavar="ORG/TEAM,...", default="",
        help="the teams --github-user belongs to (they may read and act on the operator page)",
    )
    sandbox.add_argument("--verbose", action="store_true", help="show ghapp's own log lines")
    sandbox.set_defaults(func=run)


def _problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in one line, or None."""
    for name in ("port", "github_port"):
        if not 0 <= getattr(args, name) <= 65535:
            return f"--{name.replace('_', '-')}: not a port number"
    if args.callback_url is not None:
        parts = urlsplit(args.callback_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"--callback-url: {args.callback_url!r} is not an http(s) URL"
    if args.database_url is not None and not args.database_url.startswith(
        ("sqlite:///", "postgresql://", "postgres://")
    ):
        return "--database-url: must be sqlite:///PATH or postgresql://..."
    if args.github_user is not None:
        from ghapp.core.signin import parse_teams

        try:
            teams = parse_teams(args.github_teams)
        except ValueError as exc:
            return f"--github-teams: {exc}"
        if not teams:
            return "--github-user needs --github-teams org/team,..."
    elif args.github_teams:
        return "--github-teams needs --github-user"
    return None


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM or Ctrl-C; 0 then, 2 when it cannot start."""
    # Imported here: `ghapp serve --workers N` builds this parser too and must stay small.
    from ghapp.simulator.scenarios import ScenarioBook, ScenarioError

    problem = _problem(args)
    if problem is not None:
        print(f"ghapp sandbox: {problem}", file=sys.stderr)
        return 2
    try:
        book = ScenarioBook.from_yaml(args.scenarios) if args.scenarios else ScenarioBook()
    except ScenarioError as exc:
        print(f"ghapp sandbox: --scenarios: {exc}", file=sys.stderr)
        return 2
    from ghapp.logsetup import configure_logging

    configure_logging(level="info" if args.verbose else "warning", fmt="pretty")
    return asyncio.run(serve(args, book, sys.stdout, sys.stderr))


async def serve(args: argparse.Namespace, book: ScenarioBook, out: TextIO, err: TextIO) -> int:
    """Start the sandbox, print its settings, and run until a stop signal."""
    from ghapp.core.signin import parse_teams
    from ghapp.simulator.sandbox import Sandbox

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        sandbox = await Sandbox.start(
            port=args.port,
            github_port=args.github_port,
            callback_url=args.callback_url,
            scenarios=book,
            database_url=args.database_url,
            github_user=args.github_user,
            github_teams=parse_teams(args.github_teams),
        )
    except (OSError, SystemExit) as exc:
        # uvicorn exits (SystemExit) when its port is taken; aiohttp raises OSError.
        detail = getattr(exc, "strerror", None) or "a port is in use or the database is unreachable"
        print(f"ghapp sandbox: could not start: {detail}", file=err)
        return 2
    try:
        for name, value in sandbox.env().items():
            out.write(f"{name}={value}\n")
        out.flush()
        target = args.callback_url or sandbox.stack.receiver.url + " (printed here)"
        err.write(
            f"ghapp sandbox: ready. Callbacks go to {target}.\n"
            f"  Scenarios: curl -X PUT {sandbox.github_api_url}/sandbox/scenarios/OWNER/REPO "
            "-d '{\"outcome\": \"failure\"}'\n  Ctrl-C stops it.\n"
        )
        err.flush()
        await _until(stop, sandbox.stack.receiver, err)
    finally:
        with contextlib.suppress(Exception):
            await sandbox.close()
    return 0


async def _until(stop: asyncio.Event, receiver: CallbackReceiver, err: TextIO) -> None:
    """Wait for the stop signal, printing each callback the built-in receiver takes."""
    shown = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        for callback in receiver.received[shown:]:
            event = callback.event or "?"
            if not event.startswith("deployment."):
                # `ghapp check`'s ping, or an event of a newer server: no deployment in it.
                err.write(" ".join(clean(f"callback {event}").split()) + "\n")
                continue
            deployment = callback.deployment
            verdict = deployment.get("verdict") or {}
            outcome = verdict.get("deployed_url") or verdict.get("summary") or deployment["state"]
            line = (
                f"callback {event}: {deployment['id']} {deployment['repository']} "
                f"{verdict.get('status', deployment['state'])}: {outcome}"
            )
            # The summary quotes the job's names and log: printed only once cleaned, one line.
            err.write(" ".join(clean(line).split()) + "\n")
        shown = len(receiver.received)
        err.flush()
