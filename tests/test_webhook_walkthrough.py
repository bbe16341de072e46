"""docs/webhook-debugging.md's walk-through runs verbatim against `ghapp sandbox`.

The page's `console` blocks are read in order: each `$ ` line is run as written, in one bash
session in the folder where `ghapp sandbox > .env` wrote its settings, and what it prints must
match the output the page shows under it (ids, times, ports and durations aside; `...` stands
for any number of lines). A command or an output changed on one side fails here until the page
says what the code does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghapp.simulator.stack import free_port

PAGE = Path(__file__).resolve().parents[1] / "docs" / "webhook-debugging.md"
SETTINGS = 7  # the NAME=value lines `ghapp sandbox` prints

# What differs from one run to the next, in the order it is replaced.
VARIABLE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<guid>"),
    (re.compile(r"\bdl_[0-9a-f]{16}\b"), "<log id>"),
    (re.compile(r"\bdep_[0-9a-f]{24}\b"), "<deployment>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<clock>"),
    (re.compile(r"\b\d+:\d\d\b"), "<duration>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\(\d+ bytes\)"), "(<size> bytes)"),
    (re.compile(r"\b[0-9a-f]{40,64}\b"), "<hex>"),
    (re.compile(r"\b\d+\.\d+\b"), "<number>"),
]


@dataclass
class Command:
    line: str
    expected: list[str]


def commands(page: str) -> list[Command]:
    """The `$ ` lines of the page's console blocks, each with the output shown under it."""
    found: list[Command] = []
    for block in re.findall(r"^```console\n(.*?)^```", page, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(Command(line[2:], []))
            elif found:
                found[-1].expected.append(line)
    return found


def normal(line: str) -> str:
    """A line with what varies replaced, and the spaces between columns made one."""
    for pattern, name in VARIABLE:
        line = pattern.sub(name, line)
    indent = len(line) - len(line.lstrip(" "))
    return line[:indent] + " ".join(line.split())


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether the output matches the page's, where `...` matches any number of lines."""
    want = [normal(line) for line in _trimmed(expected)]
    got = [normal(line) for line in _trimmed(actual)]
    # reach[j]: the first i lines of `want` can match the first j lines of `got`.
    reach = [True] + [False] * len(got)
    for line in want:
        if line.strip() == "...":
            for j in range(1, len(got) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and got[j] == line for j in range(len(got))]
    return reach[-1]


def test_the_matcher_skips_lines_only_where_the_page_says_so() -> None:
    assert matches(["a", "...", "}", ""], ["a", "  }", "b", "}"])
    assert matches(["ID  TIME", "x 2026-01-02T03:04:05Z"], ["ID    TIME", "x 2027-11-12T13:14:15Z"])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "b"])
    assert not matches(["a", "...", "c"], ["a", "b"])


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`ghapp sandbox > .env` in tmp_path (on free ports, not the default ones); the env the
    second terminal of the walk-through has."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GHAPP_", "ORCHESTRATOR", "APP_ID", "PRIVATE_KEY", "GITHUB_API",
                             "WEBHOOK", "CALLBACK", "PORT", "DATABASE_URL"))
    }
    # `ghapp` as installed next to this Python.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    settings = tmp_path / ".env"
    with settings.open("w") as out, (tmp_path / "sandbox.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ghapp", "sandbox", "--port", str(free_port()),
             "--github-port", str(free_port())],
            cwd=tmp_path, env=env, stdout=out, stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while len(settings.read_text().splitlines()) < SETTINGS:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        yield env
    finally:
        process.terminate()
        assert process.wait(30) == 0  # Ctrl-C or SIGTERM: a clean stop
    key = next(
        line.split("=", 1)[1] for line in settings.read_text().splitlines()
        if line.startswith("PRIVATE_KEY_PATH=")
    )
    assert not Path(key).exists()  # the App's key went with it


@pytest.mark.timeout(300)
def test_the_walkthrough_runs_verbatim(sandbox: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the walk-through sets a scenario with curl, which is not installed")
    steps = commands(PAGE.read_text())
    assert steps[0].line == "set -a; . ./.env; set +a"
    assert any("lose_webhooks" in step.line for step in steps)
    script = []
    for number, step in enumerate(steps):
        script.append(f"echo '@@@ {number}'")
        script.append(f"{{ {step.line} ; }} 2>&1; code=$?; echo; echo \"@@@ end $code\"")
    ran = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, env=sandbox,
        capture_output=True, text=True, timeout=240,
    )
    outputs = re.findall(r"^@@@ (\d+)\n(.*?)\n@@@ end (\d+)$", ran.stdout, re.M | re.DOTALL)
    assert len(outputs) == len(steps), ran.stdout + ran.stderr
    for index, ((number, out, code), step) in enumerate(zip(outputs, steps, strict=True)):
        assert int(number) == index
        assert code == "0", f"$ {step.line}\n{out}"
        assert "Traceback" not in out
        assert matches(step.expected, out.splitlines()), (
            f"$ {step.line}\n--- the page shows:\n" + "\n".join(step.expected)
            + "\n--- it printed:\n" + out
        )
