"""Job logs in GitHub's format, and the signed short-lived URLs that serve them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

from ghapp.simulator.clock import TICKS_PER_SECOND, log_stamp
from ghapp.simulator.model import Step
from ghapp.simulator.state import JobState, RunState, StepState

CRLF = "\r\n"
CANCELED = "The operation was canceled."
RUNNER_VERSION = "2.321.0"
CHECKOUT_SHA = "11bd71901bbe5b1630ceea73d27597364c9af683"
# A padding line is never shorter than this (text plus stamp and CRLF), which bounds the
# number of lines a padded step can hold and so how long its time window must be.
MIN_PADDING_LINE = 90
LINES_PER_SECOND = 20_000
CHUNK_BYTES = 64 * 1024


def runner_name(job: JobState) -> str:
    """The hosted runner that ran a job."""
    return job.runner_name or "GitHub Actions 1"


def timeout_message(job: JobState, minutes: int) -> str:
    """What GitHub prints when a job exceeds ``timeout-minutes``."""
    return (
        f"The job running on runner {runner_name(job)} has exceeded the maximum "
        f"execution time of {minutes} minutes."
    )


def setup_lines(run: RunState, job: JobState) -> list[str]:
    """The runner's preamble, written in the "Set up job" step."""
    lines = [
        f"Requested labels: {job.spec.runs_on}",
        f"Job defined at: {run.repo.full_name}/{run.workflow.path}@refs/heads/{run.head_branch}",
        "Waiting for a runner to pick up this job...",
        f"Job is about to start running on the hosted runner: {runner_name(job)} (hosted)",
        f"Current runner version: '{RUNNER_VERSION}'",
        f"Runner name: '{runner_name(job)}'",
        "Runner group name: 'GitHub Actions'",
        "Machine name: 'fv-az1234-567'",
        "##[group]Operating System",
        "Ubuntu",
        "24.04.1",
        "LTS",
        "##[endgroup]",
        "##[group]Runner Image",
        "Image: ubuntu-24.04",
        "Version: 20241215.1.0",
        "Included Software: https://github.com/actions/runner-images/blob/ubuntu24/"
        "20241215.1/images/ubuntu/Ubuntu2404-Readme.md",
        "Image Release: https://github.com/actions/runner-images/releases/tag/ubuntu24%2F20241215.1",
        "##[endgroup]",
        "##[group]Runner Image Provisioner",
        "2.0.384.1",
        "##[endgroup]",
        "##[group]GITHUB_TOKEN Permissions",
        "Contents: read",
        "Deployments: write",
        "Metadata: read",
        "##[endgroup]",
        "Secret source: Actions",
        "Prepare workflow directory",
        "Prepare all required actions",
        "Getting action download info",
    ]
    for step in job.spec.steps:
        if step.is_action:
            lines.append(
                f"Download action repository '{step.run_command}' (SHA:{CHECKOUT_SHA})"
            )
    lines.append(f"Complete job name: {job.name}")
    return lines


def group_lines(run: RunState, step: Step) -> list[str]:
    """The ``##[group]Run ...`` block that opens a step: it names the command."""
    cmd = step.run_command
    if step.is_action:
        return [
            f"##[group]Run {cmd}",
            "with:",
            f"  repository: {run.repo.full_name}",
            "  token: ***",
            "  ssh-strict: true",
            "  persist-credentials: true",
            "  clean: true",
            "  fetch-depth: 1",
            "##[endgroup]",
        ]
    first, *rest = cmd.splitlines() or [cmd]
    lines = [f"##[group]Run {first}"]
    lines += [f"\x1b[36;1m{text}\x1b[0m" for text in [first, *rest]]
    lines += ["shell: /usr/bin/bash -e {0}", "##[endgroup]"]
    return lines


def default_output(run: RunState, step: Step) -> list[str]:
    """What a step without scripted output prints."""
    if step.run_command.startswith("actions/checkout"):
        return [
            f"Syncing repository: {run.repo.full_name}",
            "##[group]Getting Git version info",
            "Working directory is '/home/runner/work/app/app'",
            "[command]/usr/bin/git version",
            "git version 2.47.1",
            "##[endgroup]",
            f"[command]/usr/bin/git checkout --progress --force -B {run.head_branch} "
            f"refs/remotes/origin/{run.head_branch}",
            f"\x1b[33m{run.head_sha}\x1b[0m",
        ]
    return []


def ending_lines(job: JobState, step: StepState, minutes: int) -> list[str]:
    """The ``##[error]`` lines a step ends with, by how it ended."""
    if step.conclusion == "failure":
        return [f"##[error]{step.spec.failure_message}"]
    if step.conclusion == "cancelled" and job.outcome == "timed_out":
        return [f"##[error]{timeout_message(job, minutes)}", f"##[error]{CANCELED}"]
    if step.conclusion == "cancelled":
        return [f"##[error]{CANCELED}"]
    return []


def step_lines(run: RunState, job: JobState, step: StepState) -> list[str]:
    """A step's log lines, without timestamps."""
    minutes = run.workflow.timeout_minutes
    if step.kind == "complete":
        return ["Cleaning up orphan processes"]
    lines = setup_lines(run, job) if step.kind == "setup" else group_lines(run, step.spec)
    lines += list(step.spec.output) or default_output(run, step.spec)
    return lines + ending_lines(job, step, minutes)


def step_seconds(line_count: int, padding: int) -> int:
    """How long a step's window must be to hold its lines at distinct, increasing times."""
    bound = line_count + 4 + padding // MIN_PADDING_LINE
    return 1 + bound // LINES_PER_SECOND


def padding_lines(total_bytes: int) -> Iterator[str]:
    """Realistic set-up noise, about ``total_bytes`` long with stamps; generated lazily."""
    written = 0
    i = 0
    while written < total_bytes:
        i += 1
        kind = i % 4
        if kind == 0:
            text = (f"Collecting package-{i:07d}==1.{i % 17}.{i % 5} "
                    f"(from -r requirements.txt (line {i % 300 + 1}))")
        elif kind == 1:
            text = (f"  Downloading package_{i:07d}-1.{i % 17}.{i % 5}-py3-none-any.whl "
                    f"({i % 900 + 10} kB)")
        elif kind == 2:
            text = (f"\x1b[36;1mnpm\x1b[0m \x1b[33mWARN\x1b[0m deprecated "
                    f"left-pad-{i:07d}@1.0.{i % 9}: this package is no longer supported.")
        else:
            text = (f"#{i % 40 + 5} [build {i % 9 + 1}/9] RUN pip install --no-cache-dir "
                    f"-r requirements.txt  {i % 60}.{i % 10}s")
        written += len(text.encode()) + 31
        yield text


def _timed(lines: Iterator[str], count: int, window: tuple[int, int]) -> Iterator[tuple[int, str]]:
    """Spread ``count`` lines over the window's inside, increasing and off its edges."""
    start = window[0] * TICKS_PER_SECOND + 100_000
    span = (window[1] - window[0]) * TICKS_PER_SECOND - 200_000
    step = max(span // (count + 1), 2)
    half = max(step // 2, 1)
    for i, text in enumerate(lines):
        yield start + i * step + (i * 7919) % half, text


def render(run: RunState, job: JobState) -> Iterator[bytes]:
    """The job's whole log as CRLF lines with 7-digit stamps, in chunks of about 64 KiB."""
    buffer: list[str] = []
    size = 0
    last_sec = -1
    prefix = ""
    for step in job.steps:
        if not step.has_log:
            continue
        count = len(step.lines) + step.padding // MIN_PADDING_LINE + 1

        def lines(step: StepState = step) -> Iterator[str]:
            yield from step.lines
            if step.padding:
                yield from padding_lines(step.padding)

        for ticks, text in _timed(lines(), count, step.window):
            sec = ticks // TICKS_PER_SECOND
            if sec != last_sec:
                last_sec = sec
                prefix = log_stamp(sec * TICKS_PER_SECOND)[:19]
            line = f"{prefix}.{ticks % TICKS_PER_SECOND:07d}Z {text}{CRLF}"
            buffer.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield "".join(buffer).encode()
                buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def sign(key: bytes, job_id: int, expires_ms: int) -> str:
    """The ``urlSignature`` of a log URL."""
    mac = hmac.new(key, f"{job_id}:{expires_ms}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def signature_ok(key: bytes, job_id: int, expires_ms: int, signature: str) -> bool:
    """Whether ``signature`` signs this job and expiry."""
    return hmac.compare_digest(sign(key, job_id, expires_ms), signature)
