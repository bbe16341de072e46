"""The `ghapp` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ghapp import __version__

# Nothing of the app is imported here: `ghapp serve --workers N` runs as a small supervisor,
# and each command loads only what it needs.


def _serve(args: argparse.Namespace) -> int:
    if args.workers > 1 and not args.reuse_port:
        # Each worker reads the settings, builds its own app and shares the database with
        # the others, like a replica; each listens on its own socket so the kernel spreads
        # the connections. The supervisor itself loads nothing of the app.
        from ghapp.cli.serving import serve_workers

        return serve_workers(args.workers)
    from ghapp.cli.malloc import one_arena
    from ghapp.cli.uvicornlite import without_cli

    # Idle memory: one malloc arena (before any thread starts), and uvicorn without its CLI.
    one_arena()
    without_cli()
    import uvicorn

    from ghapp.config import load_settings
    from ghapp.runner import Server, uvicorn_limits
    from ghapp.web.app import create_app

    settings = load_settings(for_serve=True)
    _configure_logging(settings.log_level, settings.effective_log_format())
    from ghapp.cli.startup import open_database

    # Before uvicorn: a database that cannot be opened is one line naming DATABASE_URL, not
    # the traceback uvicorn logs for a failed lifespan.
    open_database(settings.database_url)
    options: dict[str, Any] = {
        "log_level": settings.log_level,
        "access_log": settings.log_level == "debug",
        "log_config": None,  # ghapp's own logging formats (and redacts) uvicorn's lines too
        "proxy_headers": True,
        **uvicorn_limits(),
        # No WebSocket route exists: not loading a WebSocket library saves memory.
        "ws": "none",
    }

    app = create_app(settings, freeze_gc=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, **options)
    if args.reuse_port:
        from ghapp.cli.serving import reuse_port_socket

        # A worker of `--workers N`: its own SO_REUSEPORT socket, the kernel spreads connections.
        Server(config).run(sockets=[reuse_port_socket(settings.host, settings.port)])
        return 0
    Server(config).run()
    return 0


def _configure_logging(level: str, fmt: str) -> None:
    try:
        from ghapp.logsetup import configure_logging
    except ImportError:  # pragma: no cover - the structured set-up is optional at first
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s")
        return
    configure_logging(level=level, fmt=fmt)


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from ghapp.cli.demo import run_demo

    code: int = asyncio.run(run_demo(verbose=args.verbose))
    return code


def _template(args: argparse.Namespace) -> int:
    from ghapp.templates import deploy_template

    sys.stdout.write(deploy_template())
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from ghapp.cli.deliveries import run

    return run(args)


def _replay(args: argparse.Namespace) -> int:
    from ghapp.cli.replay import run

    return run(args)


def _setup(args: argparse.Namespace) -> int:
    from ghapp.cli.setup import run

    return run(args)


def _deploy_key(args: argparse.Namespace) -> int:
    from ghapp.cli.deploykey import run

    return run(args)


def _deploy(args: argparse.Namespace) -> int:
    from ghapp.cli.deploy import run_deploy

    return run_deploy(args)


def _watch(args: argparse.Namespace) -> int:
    from ghapp.cli.deploy import run_watch

    return run_watch(args)


def _add_deploy_and_watch(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    deploy = commands.add_parser(
        "deploy",
        help="ask a running server for a deployment; print its id (--watch: follow it)",
        description="Asks the server at --url (default http://127.0.0.1:$PORT, token from "
        "ORCHESTRATOR_TOKEN) for a deployment and prints its id alone on stdout's first line. "
        "With --watch it then follows it as `ghapp watch` does.",
    )
    deploy.add_argument("repository", metavar="OWNER/REPO")
    deploy.add_argument("--workflow", default="deploy.yml", help="workflow file (deploy.yml)")
    deploy.add_argument("--ref", help="branch or tag (default: the default branch)")
    deploy.add_argument(
        "--input", action="append", metavar="K=V", help="a workflow input (repeatable)"
    )
    deploy.add_argument("--env", metavar="E", help="the environment (--input environment=E)")
    deploy.add_argument(
        "--metadata", action="append", metavar="K=V",
        help="kept with the deployment and sent back in its callbacks (repeatable)",
    )
    deploy.add_argument(
        "--callback-url", metavar="URL",
        help="where its callbacks go (default: the server's ORCHESTRATOR_CALLBACK_URL)",
    )
    deploy.add_argument(
        "--output", action="append", metavar="NAME",
        help="a run output wanted in the verdict's outputs (repeatable; see "
        "docs/traces-and-outputs.md)",
    )
    deploy.add_argument("--watch", action="store_true", help="follow it to its verdict")
    deploy.add_argument("--url", help="the server (default http://127.0.0.1:$PORT)")
    deploy.set_defaults(func=_deploy)
    watch = commands.add_parser(
        "watch",
        help="follow a deployment live to its verdict (exit 0 success, 1 failure, 2 lost)",
        description="Shows the deployment's jobs and steps as they run (one line per change "
        "when stdout is not a terminal), then the verdict: on failure the failing job, step "
        "and log excerpt. Exit status 0 success, 1 failure, 2 could not follow it.",
    )
    watch.add_argument("id", metavar="ID", help="the deployment id (dep_...)")
    watch.add_argument("--url", help="the server (default http://127.0.0.1:$PORT)")
    watch.set_defaults(func=_watch)


def _add_setup_and_debugging(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser(
        "setup",
        help="create the GitHub App from manifest/app.yml and write the settings to .env",
        description="Serves a local page that posts the App manifest to GitHub; after you "
        "confirm there, writes APP_ID, PRIVATE_KEY_PATH (the key saved with mode 0600), "
        "WEBHOOK_SECRET, GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET into the env file, keeping "
        "its other lines; also ORCHESTRATOR_TOKEN and CALLBACK_SECRET when they are set "
        "nowhere yet (generated), and ORCHESTRATOR_CALLBACK_URL (--callback-url, or asked on "
        "a terminal). The env file is made readable by its owner only (0600).",
    )
    setup.add_argument("--webhook-url", help="public URL GitHub posts webhooks to (asked if unset)")
    setup.add_argument(
        "--callback-url",
        help="the orchestrator's callback URL, ORCHESTRATOR_CALLBACK_URL (asked on a terminal)",
    )
    setup.add_argument(
        "--public-url",
        help="ghapp's address as browsers reach it, PUBLIC_URL (default: the webhook URL's origin)",
    )
    setup.add_argument("--org", help="create the App for this organisation, not your account")
    setup.add_argument("--port", type=int, default=3001, help="local port (default 3001)")
    setup.add_argument("--env-file", default=".env", help="env file to update (default .env)")
    setup.add_argument("--github-url", default="https://github.com", help="GitHub (or GHES) URL")
    setup.add_argument("--api-url", help="REST API URL (default: derived from --github-url)")
    setup.add_argument("--name", help="the App's name (default: the manifest's)")
    setup.add_argument("--manifest", help="another manifest file (default manifest/app.yml)")
    setup.add_argument("--open", action="store_true", help="open the page in a browser")
    setup.set_defaults(func=_setup)

    key = commands.add_parser(
        "deploy-key",
        help="generate an SSH deploy key: private half to the DEPLOY_SSH_KEY Actions secret",
        description="Generates an Ed25519 key pair, stores the private key as the repository's "
        "Actions secret DEPLOY_SSH_KEY (it is never printed or kept) and prints the public key "
        "for ~/.ssh/authorized_keys of the deploy user on the server.",
    )
    key.add_argument("repository", help="owner/name")
    key.add_argument("--json", action="store_true", help="print JSON")
    key.set_defaults(func=_deploy_key)

    deliveries = commands.add_parser(
        "deliveries", help="debug webhook deliveries: GitHub's record, and this server's log"
    )
    actions = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the App's delivery attempts, from GitHub")
    listing.add_argument("--since", default="24h", help="window: 30m, 6h, 2d (default 24h)")
    listing.add_argument("--failed", action="store_true", help="guids with no 2xx attempt only")
    listing.add_argument("--event", help="only this event")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one attempt: request headers, payload, response")
    show.add_argument("id", help="the attempt's numeric id (ID column of list)")
    show.add_argument("--json", action="store_true", help="print JSON")
    again = actions.add_parser("redeliver", help="ask GitHub to send one attempt again")
    again.add_argument("id", help="the attempt's numeric id")
    failed = actions.add_parser(
        "redeliver-failed",
        help="redeliver every guid with no successful attempt (safe from cron)",
        description="Groups GitHub's attempts since --since by guid and redelivers the newest "
        "attempt of each guid none of whose attempts got a 2xx. Run twice, it sends nothing for "
        "a guid whose redelivery succeeded; a guid whose redelivery failed (or has not been "
        "attempted yet) is sent again.",
    )
    failed.add_argument("--since", default="24h", help="window: 30m, 6h, 2d (default 24h)")
    failed.add_argument("--dry-run", action="store_true", help="list them, send nothing")
    failed.add_argument("--max", type=int, help="at most this many redeliveries")
    failed.add_argument("--json", action="store_true", help="print JSON")
    local = actions.add_parser(
        "local", help="the deliveries a running ghapp server received (its local log)"
    )
    local.add_argument("id", nargs="?", help="show one in full (log id or X-GitHub-Delivery)")
    local.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    local.add_argument("--event", help="only this event")
    local.add_argument("--outcome", help="only this outcome (handled, duplicate, bad_signature...)")
    local.add_argument("--url", help="the server (default http://127.0.0.1:$PORT)")
    local.add_argument("--json", action="store_true", help="print JSON")
    for sub in (listing, show, again, failed, local):
        sub.set_defaults(func=_deliveries)

    replay = commands.add_parser(
        "replay",
        help="sign a saved payload with WEBHOOK_SECRET and post it to a running server",
        description="FILE: a webhook payload (needs --event) or a saved delivery (from "
        "`ghapp deliveries local ID --json` or `ghapp deliveries show ID --json`). ID: a delivery "
        "of the server's local log, re-sent with its exact body. Either way it goes out under a "
        "NEW X-GitHub-Delivery id, so the server's deduplication does not swallow it.",
    )
    replay.add_argument("target", metavar="ID|FILE", help="a local log id, or a JSON file")
    replay.add_argument("--event", help="X-GitHub-Event (default: the saved delivery's)")
    replay.add_argument("--url", help="where to post (default http://127.0.0.1:$PORT$WEBHOOK_PATH)")
    replay.set_defaults(func=_replay)


class _SettingsHelp(argparse.Action):
    """`ghapp serve --help`: the usual help, then every setting from the settings model (read
    only when asked: the parser is built for every command)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", 0)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from ghapp.config import settings_help

        parser.epilog = settings_help()
        parser.print_help()
        parser.exit()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ghapp", description="A GitHub App server that deploys on request."
    )
    parser.add_argument("--version", action="version", version=f"ghapp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server (settings from the environment)",
        description="Runs the server. Its settings come from environment variables and\n"
        "./.env; a missing or malformed one stops it with one line each, all at once.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    serve.add_argument(
        "-h", "--help", action=_SettingsHelp, help="show this help, with every setting, and exit"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes (default 1); they share the database like replicas",
    )
    # A worker of `--workers N`: listen on a socket of its own (SO_REUSEPORT).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    demo = commands.add_parser(
        "demo", help="the whole flow against the embedded GitHub simulator, no account needed"
    )
    demo.add_argument("--verbose", action="store_true", help="show ghapp's own log lines")
    demo.set_defaults(func=_demo)
    template = commands.add_parser("template", help="print a template")
    template.add_argument("name", choices=["deploy"], help="deploy: the deploy.yml workflow")
    template.set_defaults(func=_template)
    _add_deploy_and_watch(commands)
    _add_setup_and_debugging(commands)
    from ghapp.cli import check

    check.add_parser(commands)
    from ghapp.cli import sandbox

    sandbox.add_parser(commands)
    from ghapp.cli import access

    access.add_parsers(commands)
    from ghapp.cli import gate

    gate.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ghapp` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        # A closed pipe that took the whole output in its buffer shows only now.
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ghapp.cli import failures

        # A SettingsError can only come from the settings module once it is loaded: asked
        # this way, a command that never needs the settings never imports them (nor pydantic).
        config = sys.modules.get("ghapp.config")
        if config is not None and isinstance(exc, config.SettingsError):
            for problem in exc.problems:
                print(f"ghapp: {problem}", file=sys.stderr)
            return 2
        # A closed output, a server out of reach, a bad URL: one line, never a traceback.
        line = failures.one_line(exc)
        if line is None:
            raise
        failures.say(line)
        return failures.USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
