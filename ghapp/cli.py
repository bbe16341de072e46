"""The `ghapp` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ghapp.config import SettingsError, load_settings


def _serve(_args: argparse.Namespace) -> int:
    import uvicorn

    from ghapp.app import create_app

    settings = load_settings()
    settings.require_for_serve()
    _configure_logging(settings.log_level, settings.effective_log_format())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        log_config=None,  # ghapp's own logging formats (and redacts) uvicorn's lines too
        proxy_headers=True,
    )
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

    from ghapp.demo import run_demo

    code: int = asyncio.run(run_demo(verbose=args.verbose))
    return code


def _template(args: argparse.Namespace) -> int:
    from ghapp.templates import deploy_template

    sys.stdout.write(deploy_template())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ghapp", description="A GitHub App server that deploys on request."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server (settings from the environment)")
    serve.set_defaults(func=_serve)
    demo = commands.add_parser(
        "demo", help="the whole flow against the embedded GitHub simulator, no account needed"
    )
    demo.add_argument("--verbose", action="store_true", help="show ghapp's own log lines")
    demo.set_defaults(func=_demo)
    template = commands.add_parser("template", help="print a template")
    template.add_argument("name", choices=["deploy"], help="deploy: the deploy.yml workflow")
    template.set_defaults(func=_template)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ghapp` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"ghapp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
