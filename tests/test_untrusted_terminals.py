"""What the command line prints is cleaned on its own side too: a deployment from an older server
(or a delivery from anyone) whose texts still carry escape sequences reaches no terminal."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from ghapp.cli.common import print_table
from ghapp.cli.demo import describe
from ghapp.cli.deploy import LineView, drawing, verdict_lines
from ghapp.core.models import Deployment
from ghapp.logsetup import PrettyFormatter
from ghapp.simulator.receiver import ReceivedCallback

NOW = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
HOSTILE = "\x1b]52;c;Y2xpcA==\x07\x1b]8;;https://osc8.evil.example\x1b\\x\x1b]8;;\x1b\\\x1b#8\x1bc\x9b2J\x08\x07"
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def raw_deployment(state: str = "completed") -> dict[str, Any]:
    """A Deployment resource as an older ghapp would send it: remote texts left raw."""
    return {
        "id": "dep_1",
        "repository": "acme/shop",
        "workflow": "deploy.yml",
        "ref": "main",
        "state": state,
        "callback": {"url": None},
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
        "run": {"id": 7},
        "progress": {
            "jobs": [
                {
                    "id": 1,
                    "name": f"deploy{HOSTILE}[bold]job[/bold]",
                    "status": "in_progress",
                    "steps": [
                        {"number": 1, "name": f"Build{HOSTILE}\nnext", "status": "completed",
                         "conclusion": "success"},
                        {"number": 2, "name": f"Ship{HOSTILE}[red]step[/red]",
                         "status": "in_progress"},
                    ],
                }
            ],
            "steps_completed": 1,
            "steps_total": 2,
        },
        "verdict": {
            "status": "failure",
            "reason": "failure",
            "summary": f"Job 'deploy{HOSTILE}' failed",
            "failed_jobs": [
                {
                    "id": 1,
                    "name": f"deploy{HOSTILE}",
                    "html_url": f"https://github.com/x{HOSTILE}",
                    "conclusion": "failure",
                    "failed_step": {"number": 2, "name": f"Ship{HOSTILE}"},
                    "log_excerpt": f"line one{HOSTILE}\n##[error]boom{HOSTILE}",
                    "annotations": [],
                }
            ],
        },
    }


def assert_clean(text: str) -> None:
    assert FORBIDDEN.search(text) is None, repr(text)
    assert "Y2xpcA==" not in text and "osc8.evil.example" not in text


def test_the_verdict_is_printed_clean(capsys: pytest.CaptureFixture[str]) -> None:
    deployment = Deployment.model_validate(raw_deployment())
    assert verdict_lines(deployment) == 1
    out = capsys.readouterr().out
    assert_clean(out)
    assert "failed job 'deployx', step 2 'Shipx' (failure)" in out
    assert "  | ##[error]boomx" in out  # no report: the excerpt is printed, cleaned
    with_report = raw_deployment()
    with_report["verdict"]["report"] = f"# Deploy failed\n\n```\nboom{HOSTILE}\n```\n"
    assert verdict_lines(Deployment.model_validate(with_report)) == 1
    out = capsys.readouterr().out
    assert_clean(out)
    assert "```\nboomx\n```" in out


def test_one_line_per_change_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    LineView().show(Deployment.model_validate(raw_deployment("in_progress")))
    out = capsys.readouterr().out
    assert_clean(out)
    assert out.count("\n") == 1 and "deployx[bold]job[/bold]: Shipx[red]step[/red]" in out


def test_the_live_view_draws_names_as_text_never_markup() -> None:
    deployment = Deployment.model_validate(raw_deployment("in_progress"))
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system="truecolor", width=160)
    console.print(drawing(deployment, NOW))
    drawn = screen.getvalue()
    # rich's own styling is there; nothing of the names' sequences is.
    assert "\x1b[" in drawn
    for sequence in ("\x1b]", "\x1b#", "\x1bc", "\x9b", "\x07", "\x08"):
        assert sequence not in drawn
    plain = re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert_clean(plain)
    assert "deployx[bold]job[/bold]" in plain and "Shipx[red]step[/red]" in plain
    assert "✓ Buildx next" in plain  # a newline in a name does not break the view's lines


def test_the_demo_and_the_delivery_tables_print_clean(capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps(raw_deployment()).encode()
    out = io.StringIO()
    describe(ReceivedCallback(headers={}, body=body, signature_ok=True, status=200), out)
    assert_clean(out.getvalue())
    assert "job 'deployx' step 2 'Shipx'" in out.getvalue()
    print_table(["EVENT", "ACTION"], [[f"push{HOSTILE}", "opened\nclosed"]])
    table = capsys.readouterr().out
    assert_clean(table)
    assert "pushx" in table and "opened closed" in table


def test_pretty_log_lines_are_clean() -> None:
    # The sandbox logs in the pretty format to a terminal; fields may quote GitHub or a job.
    record = logging.LogRecord("ghapp.failures", logging.WARNING, __file__, 1, "job log %s",
                               (f"unavailable{HOSTILE}",), None)
    record.error = f"GitHub said{HOSTILE}"
    line = PrettyFormatter().format(record)
    assert_clean(line)
    assert "job log unavailablex" in line and 'error="GitHub saidx"' in line
