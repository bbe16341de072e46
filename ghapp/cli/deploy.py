"""`ghapp deploy` and `ghapp watch`: ship a deploy from a terminal and follow it as it runs.

Like `gh workflow run` + `gh run watch`: the deployment's id alone on stdout's first line, then
(with --watch, or `ghapp watch ID`) its jobs and steps live on a terminal, one line per change
otherwise, and the verdict. Exit status: 0 success, 1 failure, 2 could not follow.

Names, summaries, excerpts and the report carry text from the job (see docs/untrusted-text.md):
everything printed goes through `clean`, and the rich view takes it as `Text`, never as markup."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ghapp.cli import failures
from ghapp.client import Client, GhappError, StreamUnavailable
from ghapp.config import SettingsError, load_settings
from ghapp.core.models import Deployment, ProgressJob
from ghapp.core.untrusted import clean, code_span, one_line

FOLLOW_FAILED = 2
MARKS = {"completed": "✓", "in_progress": "*", "queued": "·", "waiting": "·", "pending": "·"}
FAILED_MARK = "X"


def _server(url: str | None) -> tuple[str, str]:
    base = failures.check_url(url) if url is not None else None
    settings = load_settings()
    if not settings.orchestrator_token:
        raise SettingsError("ORCHESTRATOR_TOKEN: required to talk to the server")
    return base or f"http://127.0.0.1:{settings.port}", settings.orchestrator_token


def _pairs(option: str, pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise failures.UsageError(f"{option} {pair!r}: expected KEY=VALUE")
        found[key] = value
    return found


def _inputs(pairs: list[str], environment: str | None) -> dict[str, str | int | float | bool]:
    inputs: dict[str, str | int | float | bool] = {**_pairs("--input", pairs)}
    if environment is not None:
        inputs["environment"] = environment
    return inputs


def run_deploy(args: argparse.Namespace) -> int:
    """`ghapp deploy OWNER/REPO ...`: ask the server for a deployment; --watch follows it."""
    inputs = _inputs(args.input or [], args.env)
    metadata = _pairs("--metadata", args.metadata or [])
    if args.callback_url is not None:
        failures.check_url(args.callback_url, "--callback-url")
    base, token = _server(args.url)
    return asyncio.run(_deploy(base, token, args, inputs, metadata))


def run_watch(args: argparse.Namespace) -> int:
    """`ghapp watch ID`: follow a deployment to its verdict."""
    base, token = _server(args.url)
    return asyncio.run(_follow(base, token, args.id))


async def _deploy(
    base: str,
    token: str,
    args: argparse.Namespace,
    inputs: dict[str, str | int | float | bool],
    metadata: dict[str, str],
) -> int:
    try:
        async with Client(base, token, max_attempts=2) as client:
            deployment = await client.deploy(
                args.repository,
                workflow=args.workflow,
                ref=args.ref,
                inputs=inputs,
                metadata=metadata or None,
                callback_url=args.callback_url,
                outputs=getattr(args, "output", None) or None,
            )
    except GhappError as exc:
        return _fail(f"the server refused the deployment: {exc}", exc.errors)
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        return _fail(f"could not reach the server at {base}: {failures.reason(exc)}")
    print(deployment.id, flush=True)
    if not args.watch:
        return 0
    return await _follow(base, token, deployment.id)


def _fail(message: str, errors: list[dict[str, Any]] | None = None) -> int:
    # The server's messages may quote GitHub's.
    print(clean(f"ghapp: {message}"), file=sys.stderr)
    for item in errors or []:
        print(clean(f"  {item.get('field')}: {item.get('message')}"), file=sys.stderr)
    return FOLLOW_FAILED


async def _follow(base: str, token: str, deployment_id: str) -> int:
    view: View = LiveView() if sys.stdout.isatty() else LineView()
    last: Deployment | None = None
    try:
        async with Client(base, token, max_attempts=2) as client:
            last = await client.get(deployment_id)
            view.show(last)
            try:
                async for last in client.events(deployment_id):
                    view.show(last)
            except StreamUnavailable:
                while last.state != "completed":
                    await asyncio.sleep(2.0)
                    last = await client.get(deployment_id)
                    view.show(last)
    except GhappError as exc:
        view.close()
        if exc.status == 401:
            return _fail(f"the server at {base} refused the token (ORCHESTRATOR_TOKEN)")
        if exc.status == 404:
            return _fail(f"no deployment {deployment_id} on {base}")
        return _fail(str(exc))
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        # (A closed stdout is a BrokenPipeError, a ConnectionError too: not the server's.)
        if isinstance(exc, BrokenPipeError):
            raise
        view.close()
        what = "could not reach" if last is None else "lost"
        return _fail(f"{what} the server at {base}: {failures.reason(exc)}")
    view.close()
    return verdict_lines(last, markdown=sys.stdout.isatty())


def verdict_lines(deployment: Deployment, *, markdown: bool = False) -> int:
    """Print the verdict, the run's link, and on failure where it failed and the report
    (rendered from its Markdown by rich with `markdown`, on a terminal); the exit status."""
    verdict = deployment.verdict
    if verdict is None:
        print(f"{deployment.id}: ended without a verdict ({deployment.state})")
        return FOLLOW_FAILED
    reason = f" ({verdict.reason})" if verdict.reason and verdict.reason != "failure" else ""
    # Cleaned here too: the server may be an older ghapp that sent its text as GitHub gave it.
    print(clean(f"{verdict.status}{reason}: {verdict.summary}"))
    if verdict.deployed_url:
        print(clean(f"deployed to {verdict.deployed_url}"))
    if deployment.run is not None and deployment.run.html_url:
        print(clean(f"run: {deployment.run.html_url}"))
    # The run's outputs are remote text: cleaned, each on one line, quoted as a log line is.
    for name, value in (getattr(verdict, "outputs", None) or {}).items():
        print(f"output {one_line(name, 100)} = {code_span(value, 1000)}")
    if verdict.status == "success":
        return 0
    # The report (when the server writes one) carries the excerpts, the cause and the links.
    report = getattr(verdict, "report", None)
    for job in verdict.failed_jobs:
        failed = job.failed_step
        step = f", step {failed.number} {clean(failed.name)!r}" if failed else ""
        print(clean(f"failed job {clean(job.name)!r}{step} ({job.conclusion})"))
        if report:
            continue
        if job.html_url:
            print(clean(f"  {job.html_url}"))
        for line in clean(job.log_excerpt).splitlines():
            print(f"  | {line}")
    if report:
        print()
        show_report(clean(report), markdown=markdown)
    return 1


def show_report(report: str, *, markdown: bool) -> None:
    """The report as Markdown rendered by rich (a terminal), else as its text."""
    if not markdown:
        print(report)
        return
    from rich.console import Console
    from rich.markdown import Markdown

    # Markdown, never console markup: a `[bold]` in a quoted log line stays those characters;
    # the report quotes every remote text in code spans and blocks, shown as written.
    Console().print(Markdown(report))


# --- views -------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _current(job: ProgressJob) -> str:
    for step in job.steps:
        if step.status == "in_progress":
            return clean(step.name)
    return ""


def summary(deployment: Deployment, now: datetime) -> str:
    """One line: state, steps done, the running step of each job, elapsed and the estimate."""
    parts: list[str] = [clean(deployment.state)]
    progress = deployment.progress
    if progress is not None and progress.steps_total:
        parts.append(f"{progress.steps_completed}/{progress.steps_total} steps")
    for job in progress.jobs if progress else []:
        running = _current(job)
        status = job.conclusion or job.status
        name = clean(job.name)
        parts.append(f"{name}: {running}" if running else f"{name}: {clean(status)}")
    waiting = progress.waiting if progress is not None else None
    if waiting is not None and deployment.state != "completed":
        who = ", ".join(clean(name) for name in waiting.reviewers) or "a person"
        since = _clock((now - waiting.since).total_seconds())
        parts.append(f"waiting for {who} ({clean(waiting.environment)}) for {since}")
    parts.append(f"elapsed {_clock((now - deployment.created_at).total_seconds())}")
    estimate = progress.estimated_completion_at if progress is not None else None
    if estimate is not None and deployment.state != "completed":
        left = (estimate - now).total_seconds()
        parts.append(f"about {_clock(left)} left" if left > 0 else "past the estimate")
    return " · ".join(" ".join(part.split()) for part in parts)


class View:
    """How a followed deployment is shown."""

    def show(self, deployment: Deployment) -> None:
        """A new snapshot."""

    def close(self) -> None:
        """Following is over."""


class LineView(View):
    """One line per change (not a terminal: logs, CI, pipes)."""

    def __init__(self) -> None:
        self._last = ""

    def show(self, deployment: Deployment) -> None:
        """Print a line if anything but the clock changed."""
        now = datetime.now(UTC)
        line = summary(deployment, now)
        key = line.rsplit(" · elapsed", 1)[0]
        if key != self._last:
            self._last = key
            print(f"{now:%H:%M:%S} {line}", flush=True)


class LiveView(View):
    """Jobs and steps redrawn in place on a terminal (rich), the clock ticking."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._deployment: Deployment | None = None
        self._live = Live(
            get_renderable=self._render, console=Console(), refresh_per_second=4, transient=False
        )
        self._live.start()

    def show(self, deployment: Deployment) -> None:
        """Redraw with this snapshot."""
        self._deployment = deployment
        self._live.refresh()

    def close(self) -> None:
        """Leave the last drawing on screen."""
        self._live.stop()

    def _render(self) -> Any:
        from rich.text import Text

        if self._deployment is None:
            return Text("connecting...")
        return drawing(self._deployment, datetime.now(UTC))


def drawing(deployment: Deployment, now: datetime) -> Any:
    """The live view of a deployment as a rich renderable: the run, each job and its steps."""
    from rich.table import Table
    from rich.text import Text

    where = f"{deployment.workflow}@{deployment.ref}"
    # Every text is a Text, never markup: a `[bold]` in a step name stays those characters.
    title = Text(_flat(f"{deployment.repository} · {where} · {deployment.id}"))
    table = Table(title=title, show_header=False, box=None, title_justify="left")
    table.add_column(width=2)
    table.add_column()
    run = f"run {deployment.run.id}" if deployment.run else "run not known yet"
    table.add_row(Text(""), Text(f"{run} · {summary(deployment, now)}", style="bold"))
    for job in deployment.progress.jobs if deployment.progress else []:
        mark = Text(_mark(job.status, job.conclusion))
        table.add_row(mark, Text(_flat(job.name), style="bold"))
        for step in job.steps:
            line = f"{_mark(step.status, step.conclusion)} {_flat(step.name)}"
            table.add_row(Text(""), Text(line))
    return table


def _flat(name: str) -> str:
    """A remote name cleaned and on one line: a newline in it must not redraw the view."""
    return " ".join(clean(name).split())


def _mark(status: str, conclusion: str | None) -> str:
    if conclusion in ("failure", "cancelled", "timed_out"):
        return FAILED_MARK
    if conclusion == "skipped":
        return "-"
    return MARKS.get(status, "·")
