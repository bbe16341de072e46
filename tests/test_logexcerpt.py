"""The streaming log excerpt: attribution of lines to the failing step, trimming, limits.

Real GitHub Actions logs are read from ``../shared/github-reference/logs`` (beside the
repository, never copied into it); tests that need them skip when that folder is absent.
"""

from __future__ import annotations

import json
import math
import random
import re
import tracemalloc
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ghapp.core.logs.excerpt import Excerpt, ExcerptBuilder

LOGS = Path(__file__).resolve().parents[2] / "shared" / "github-reference" / "logs"
Steps = list[dict[str, Any]]

# An independent reference for "timestamp and ANSI removed" (the module has its own).
_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OMITTED = re.compile(r"^\.\.\. (\d+) lines omitted \.\.\.$")


def sample(name: str) -> bytes:
    """A real log sample, or skip the test when the shared folder is not there."""
    path = LOGS / name
    if not path.is_file():
        pytest.skip(f"reference log {name} not found in {LOGS}")
    return path.read_bytes()


def strip(raw: bytes) -> str:
    """What the excerpt should show for one raw line."""
    return _ANSI.sub("", _STAMP.sub(b"", raw).decode("utf-8", "replace").rstrip("\r"))


def raw_lines(data: bytes) -> list[bytes]:
    """A log's lines, line ends removed."""
    return [line.rstrip(b"\r") for line in data.split(b"\n")[:-1]] if data else []


def run(
    data: bytes,
    steps: Sequence[Mapping[str, Any]] | None,
    number: int | None,
    chunk: int | None = None,
    **limits: int,
) -> Excerpt:
    """Feed ``data`` in chunks of ``chunk`` bytes (all at once by default)."""
    builder = ExcerptBuilder(steps=steps, failed_step_number=number, **limits)
    size = chunk or max(1, len(data))
    for i in range(0, len(data), size):
        builder.feed(data[i : i + size])
    return builder.finish()


def step(
    number: int, name: str, started: str, completed: str, conclusion: str = "success"
) -> dict[str, Any]:
    """A jobs-API step (times as the API writes them)."""
    return {
        "number": number,
        "name": name,
        "status": "completed",
        "conclusion": conclusion,
        "started_at": started,
        "completed_at": completed,
    }


def log(*lines: tuple[str, str], eol: str = "\r\n") -> bytes:
    """A log from (time, text) pairs; time ``""`` writes a line without a timestamp."""
    out = []
    for when, text in lines:
        out.append(f"2026-11-26T{when}Z {text}" if when else text)
    return (eol.join(out) + eol).encode()


# -- helpers of the API ----------------------------------------------------------------------


def test_excerpt_fields_and_repeatable_finish() -> None:
    builder = ExcerptBuilder(steps=None, failed_step_number=None)
    builder.feed(log(("10:00:00.1000000", "hello"), ("10:00:00.2000000", "##[error]bad")))
    first = builder.finish()
    assert builder.finish() is first
    assert first.method == "error_fallback"
    assert first.errors == ["bad"] and first.first_error == "bad"
    assert first.lines_seen == 2
    with pytest.raises(RuntimeError):
        builder.feed(b"more\n")
    assert Excerpt(text="x", errors=["a", "b"]).first_error == "a"
    with pytest.raises(ValueError):
        ExcerptBuilder(max_lines=0)


def test_empty_log() -> None:
    empty = run(b"", [step(1, "a", "2026-11-26T10:00:00Z", "2026-11-26T10:00:01Z", "failure")], 1)
    assert (empty.text, empty.method, empty.lines_seen, empty.errors) == ("", "empty", 0, [])
    assert run(b"no newline and no error", None, None).method == "empty"
    assert run(b"no newline and no error", None, None).lines_seen == 1


# -- real samples ------------------------------------------------------------------------------


def test_pr_sanity_sample_with_an_earlier_step_in_the_same_second() -> None:
    fragment = sample("pytorch-pr_sanity_exit_code_only.clean.txt")
    lines = raw_lines(fragment)
    group = lines[0]
    assert group[29:].startswith(b"##[group]Run bash .github/scripts/pr-sanity-check.sh")
    first, last = lines[0][:19].decode(), lines[-1][:19].decode()  # same second here
    # The checkout step before it ran until the very second the sanity check started.
    day, second = first.split("T")
    earlier = log(
        (f"{second[:6]}30.9000000", "##[group]Run actions/checkout@v4"),
        (f"{second[:6]}31.1000000", "Syncing repository: pytorch/pytorch"),
        (f"{second}.1000000", "[command]/usr/bin/git log -1 --format=%H"),
        (f"{second}.2000000", "f9792f10198e072c1d77843528a53339eb26c19d"),
        eol="\n",
    ).replace(b"2026-11-26", day.encode())
    steps = [
        step(1, "Set up job", f"{day}T{second[:6]}29Z", f"{day}T{second[:6]}30Z"),
        step(2, "Checkout", f"{day}T{second[:6]}30Z", f"{first}Z"),
        step(3, "Check PR size", f"{first}Z", f"{last}Z", "failure"),
    ]
    got = run(earlier + fragment, steps, 3)
    assert got.method == "timestamps"
    assert got.text == "\n".join(strip(line) for line in lines)
    assert "##[error]Process completed with exit code 1." in got.text.splitlines()
    assert "Your PR is 3174 LOC which is more than the 2000 maximum" in got.text
    assert "f9792f10198e072c1d77843528a53339eb26c19d" not in got.text.splitlines()
    assert "checkout" not in got.text
    assert got.errors == ["Process completed with exit code 1."]
    assert not got.truncated and got.lines_seen == len(lines) + 4


@pytest.mark.parametrize(
    ("name", "error", "after"),
    [
        (
            "pytorch-gha_timeout.clean.txt",
            "##[error]The action 'Test' has timed out after 360 minutes.",
            "##[group]Run # copy test results back",
        ),
        (
            "pytorch-gha_operation_canceled.clean.txt",
            "##[error]The operation was canceled.",
            "##[group]Run actions/upload-artifact@v4.4.0",
        ),
    ],
)
def test_post_steps_after_the_failure_are_excluded(name: str, error: str, after: str) -> None:
    data = sample(name)
    lines = raw_lines(data)
    at = next(i for i, line in enumerate(lines) if strip(line) == error)
    error_second = lines[at][:19].decode()
    begin = lines[0][:19].decode()
    # The failing step ran from before the fragment to the error's second; the post steps
    # (``if: always()`` ones) started in that same second.
    steps = [
        step(4, "Previous", "2026-07-28T00:00:00Z", "2026-07-28T00:00:01Z"),
        step(5, "Failing", f"{begin[:11]}00:00:02Z", f"{error_second}Z", "failure"),
        step(6, "Post 1", f"{error_second}Z", f"{error_second}Z"),
        step(7, "Post 2", f"{error_second}Z", "2026-07-29T23:59:59Z"),
    ]
    got = run(data, steps, 5)
    assert got.method == "timestamps"
    assert got.text == "\n".join(strip(line) for line in lines[: at + 1])
    assert got.text.splitlines()[-1] == error
    assert after not in got.text
    assert "Node 20 is being deprecated" not in got.text  # the next step's preamble
    assert got.first_error == error.removeprefix("##[error]")
    assert "\x1b" not in got.text


@pytest.mark.parametrize("source", ["api", "log"])
def test_va_vets_group_is_exactly_its_lines(source: str) -> None:
    data = sample("va-vets-api-job-5169530176.log")
    lines = raw_lines(data)
    assert data.count(b"\r\n") == len(lines)
    runs = [i for i, line in enumerate(lines) if line[29:].startswith(b"##[group]Run ")]
    start = runs[0]  # its only `Run` group: actions/stale@v4 (the others are the action's)
    end = next(i for i, line in enumerate(lines) if line.endswith(b"Cleaning up orphan processes"))
    if source == "api":
        exchange = json.loads(sample("va-vets-api-job-5169530176.http.json"))
        steps = exchange["interactions"][0]["body"]["steps"]  # real times with -07:00 offsets
    else:

        def second(i: int) -> str:
            return lines[i][:19].decode() + "Z"

        steps = [
            step(1, "Set up job", second(0), second(start - 1)),
            step(2, "Run actions/stale@v4", second(start), second(end - 1)),
            step(3, "Complete job", second(end), second(end)),
        ]
    steps[1] = {**steps[1], "conclusion": "failure"}
    want = [strip(line) for line in lines[start:end]]
    got = run(data, steps, 2, max_lines=5000, max_bytes=1 << 20)
    assert got.method == "timestamps"
    assert got.text == "\n".join(want)
    assert "\r" not in got.text and "\x1b" not in got.text
    assert not got.truncated and got.lines_seen == len(lines)
    # Within the default limits: the command line, then the section's last lines.
    cut = run(data, steps, 2)
    text = cut.text.splitlines()
    assert cut.truncated and len(text) == 200 and len(cut.text.encode()) <= 32 * 1024
    assert text[0] == "##[group]Run actions/stale@v4"
    omitted = _OMITTED.match(text[1])
    assert omitted is not None and int(omitted[1]) == len(want) - 199
    assert text[2:] == want[-198:]


def _swfz_jobs() -> Iterator[tuple[str, bytes, Steps, dict[int, list[bytes]]]]:
    path = LOGS / "swfz-run-logs.zip"
    if not path.is_file():
        pytest.skip(f"reference log swfz-run-logs.zip not found in {LOGS}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        jobs = sorted({n.split("/")[0] for n in names if "/" in n and not n.endswith("/")})
        for job in jobs:
            per_step: dict[int, list[bytes]] = {}
            for name in names:
                if name.startswith(f"{job}/") and name.endswith(".txt"):
                    number = int(name.split("/")[1].split("_")[0])
                    per_step[number] = raw_lines(archive.read(name))
            steps = [
                step(n, f"step {n}", ls[0][:19].decode() + "Z", ls[-1][:19].decode() + "Z")
                for n, ls in sorted(per_step.items())
            ]
            yield job, archive.read(f"0_{job}.txt"), steps, per_step


def test_swfz_every_step_of_every_job_matches_its_own_log_file() -> None:
    """GitHub's run archive has each job's full log and each step's own log: the excerpt of
    any step, cut out of the full log by timing, equals that step's file. Steps there often
    share a second with their neighbours (checkout -> setup-node, the post steps, Complete)."""
    checked = 0
    for job, full, steps, per_step in _swfz_jobs():
        for number, own in per_step.items():
            want = "\n".join(strip(line) for line in own)
            for chunk in (None, 7, 4096):
                got = run(full, steps, number, chunk, max_lines=5000, max_bytes=1 << 20)
                assert got.method == "timestamps", (job, number)
                assert got.text == want, (job, number, chunk)
            checked += 1
    assert checked == 33


# -- generated logs ------------------------------------------------------------------------------

FIVE_STEPS = [
    step(1, "Set up job", "2026-11-26T10:00:00Z", "2026-11-26T10:00:01Z"),
    step(2, "Checkout", "2026-11-26T03:00:01.000-07:00", "2026-11-26T03:00:03.000-07:00"),
    step(3, "Build", "2026-11-26T10:00:03Z", "2026-11-26T10:00:07Z"),
    step(4, "Deploy", "2026-11-26T10:00:07Z", "2026-11-26T10:00:09Z", "failure"),
    step(5, "Complete job", "2026-11-26T10:00:09Z", "2026-11-26T10:00:09Z"),
]
FIVE_LOG = [
    ("10:00:00.1000000", "Current runner version: '2.321.0'"),
    ("10:00:00.2000000", "##[group]Operating System"),
    ("10:00:00.3000000", "Ubuntu"),
    ("10:00:00.4000000", "##[endgroup]"),
    ("10:00:01.2000000", "Complete job name: deploy"),
    ("10:00:01.5000000", "##[group]Run actions/checkout@v4"),
    ("10:00:01.6000000", "##[endgroup]"),
    ("10:00:02.1000000", "Syncing repository: acme/shop"),
    ("10:00:03.6000000", "##[group]Run docker build -t shop ."),
    ("10:00:03.6100000", "\x1b[36;1mdocker build -t shop .\x1b[0m"),
    ("10:00:03.7000000", "##[endgroup]"),
    ("10:00:05.0000000", "#5 [2/4] RUN pip install -r requirements.txt"),
    ("10:00:07.2000000", "#9 naming to docker.io/library/shop done"),
    ("10:00:07.4000000", "#9 DONE 0.1s"),
    ("10:00:07.5000000", "##[group]Run ssh deploy@prod 'docker compose up -d' # 日本 ✔"),
    ("10:00:07.5100000", "\x1b[36;1mssh deploy@prod 'docker compose up -d'\x1b[0m"),
    ("10:00:07.6000000", "##[endgroup]"),
    ("10:00:08.1000000", "Pseudo-terminal will not be allocated because stdin is not a terminal."),
    ("10:00:09.1000000", "ssh: connect to host prod port 22: Connection timed out"),
    ("10:00:09.3000000", "##[error]Process completed with exit code 255."),
    ("10:00:09.5000000", "Cleaning up orphan processes"),
]


def test_shared_second_between_steps_three_and_four() -> None:
    got = run(log(*FIVE_LOG), FIVE_STEPS, 4)
    assert got.method == "timestamps"
    assert got.text.splitlines() == [
        "##[group]Run ssh deploy@prod 'docker compose up -d' # 日本 ✔",
        "ssh deploy@prod 'docker compose up -d'",
        "##[endgroup]",
        "Pseudo-terminal will not be allocated because stdin is not a terminal.",
        "ssh: connect to host prod port 22: Connection timed out",
        "##[error]Process completed with exit code 255.",
    ]
    assert got.errors == ["Process completed with exit code 255."]
    assert got.lines_seen == len(FIVE_LOG)


def test_shared_second_seen_from_the_earlier_step() -> None:
    # Build failed instead, and the deploy step ran anyway (`if: always()`), starting in the
    # second Build ended: Build's section stops at the deploy's group line.
    lines = [*FIVE_LOG[:13], ("10:00:07.3000000", "##[error]Process completed with exit code 1.")]
    lines += FIVE_LOG[14:]
    steps = [dict(s) for s in FIVE_STEPS]
    steps[2]["conclusion"], steps[3]["conclusion"] = "failure", "success"
    got = run(log(*lines), steps, 3)
    assert got.text.splitlines() == [
        "##[group]Run docker build -t shop .",
        "docker build -t shop .",
        "##[endgroup]",
        "#5 [2/4] RUN pip install -r requirements.txt",
        "#9 naming to docker.io/library/shop done",
        "##[error]Process completed with exit code 1.",
    ]
    # Without an error line, the next step's group still ends it (held, then dropped).
    no_error = run(log(*FIVE_LOG), steps, 3)
    assert no_error.text.splitlines()[-2:] == [
        "#9 naming to docker.io/library/shop done",
        "#9 DONE 0.1s",
    ]


def test_composite_step_nested_group_in_the_last_second_is_kept() -> None:
    steps = [
        step(1, "Set up job", "2026-11-26T10:00:00Z", "2026-11-26T10:00:01Z"),
        step(2, "Deploy", "2026-11-26T10:00:01Z", "2026-11-26T10:00:05Z", "failure"),
        step(3, "Post", "2026-11-26T10:00:05Z", "2026-11-26T10:00:05Z"),
    ]
    data = log(
        ("10:00:00.5000000", "Current runner version: '2.321.0'"),
        ("10:00:01.5000000", "##[group]Run ./.github/actions/deploy"),
        ("10:00:02.0000000", "##[group]Run ./build.sh"),
        ("10:00:03.0000000", "built"),
        ("10:00:05.1000000", "##[group]Run ./push.sh"),
        ("10:00:05.2000000", "push: denied"),
        ("10:00:05.3000000", "##[error]Process completed with exit code 1."),
        ("10:00:05.4000000", "Post job cleanup."),
        ("10:00:05.5000000", "[command]/usr/bin/git version"),
    )
    assert run(data, steps, 2).text.splitlines() == [
        "##[group]Run ./.github/actions/deploy",
        "##[group]Run ./build.sh",
        "built",
        "##[group]Run ./push.sh",
        "push: denied",
        "##[error]Process completed with exit code 1.",
    ]


def test_crlf_and_lf_give_the_same_excerpt() -> None:
    crlf = run(log(*FIVE_LOG, eol="\r\n"), FIVE_STEPS, 4)
    lf = run(log(*FIVE_LOG, eol="\n"), FIVE_STEPS, 4)
    assert crlf == lf
    assert "\r" not in crlf.text


def test_every_chunk_size_gives_the_same_excerpt() -> None:
    data = b"\xef\xbb\xbf" + log(*FIVE_LOG)  # BOM, CRLF, ANSI, multi-byte characters
    assert "日本 ✔".encode() in data
    whole = run(data, FIVE_STEPS, 4)
    fallback = run(data, None, None)
    for size in range(1, 65):
        assert run(data, FIVE_STEPS, 4, size) == whole, size
        assert run(data, None, None, size) == fallback, size
    assert whole.text.startswith("##[group]Run ssh deploy@prod 'docker compose up -d' # 日本 ✔")


def test_bom_at_the_start() -> None:
    data = b"\xef\xbb\xbf" + log(*FIVE_LOG)
    steps = [dict(s) for s in FIVE_STEPS]
    steps[0]["conclusion"], steps[3]["conclusion"] = "failure", "success"
    got = run(data, steps, 1)
    assert got.text.splitlines()[0] == "Current runner version: '2.321.0'"
    assert "\ufeff" not in got.text
    assert got.text.splitlines()[-1] == "Complete job name: deploy"


def test_lines_without_timestamps_follow_the_line_before() -> None:
    lines = [
        *FIVE_LOG[:13],
        ("", "    continuation of the build's output"),
        *FIVE_LOG[14:18],
        ("", "Traceback (most recent call last):"),
        ("", '  File "deploy.py", line 3'),
        *FIVE_LOG[18:],
    ]
    got = run(log(*lines), FIVE_STEPS, 4)
    text = got.text.splitlines()
    assert "continuation of the build's output" not in got.text
    at = text.index("Pseudo-terminal will not be allocated because stdin is not a terminal.")
    assert text[at + 1 : at + 3] == [
        "Traceback (most recent call last):",
        '  File "deploy.py", line 3',
    ]
    assert got.lines_seen == len(lines)


def test_log_without_group_markers() -> None:
    plain = [(when, text) for when, text in FIVE_LOG if "##[group]" not in text]
    plain = [(w, t) for w, t in plain if t != "##[endgroup]"]
    got = run(log(*plain), FIVE_STEPS, 4)
    assert got.method == "timestamps"
    # No marker in the shared second 10:00:07: Build's lines there are not claimed.
    assert got.text.splitlines() == [
        "Pseudo-terminal will not be allocated because stdin is not a terminal.",
        "ssh: connect to host prod port 22: Connection timed out",
        "##[error]Process completed with exit code 255.",
    ]
    # Without steps either: the last lines up to the error.
    fallback = run(log(*plain), None, None, max_lines=3)
    assert fallback.method == "error_fallback"
    assert fallback.text.splitlines() == [
        "... 2 lines omitted ...",  # the section is the last max_lines lines before it
        "ssh: connect to host prod port 22: Connection timed out",
        "##[error]Process completed with exit code 255.",
    ]


def test_no_steps_info_uses_the_error_neighbourhood() -> None:
    lines = [
        *FIVE_LOG[:20],
        ("10:00:09.4000000", "##[error]Second error."),
        ("10:00:09.6000000", "Post job cleanup."),
        ("10:00:09.7000000", "[command]/usr/bin/git version"),
    ]
    for steps, number in ((None, None), ([], None), (FIVE_STEPS, None), (FIVE_STEPS, 9)):
        got = run(log(*lines), steps, number)
        assert got.method == "error_fallback"
        assert (
            got.text.splitlines()[0]
            == "##[group]Run ssh deploy@prod 'docker compose up -d' # 日本 ✔"
        )
        assert got.text.splitlines()[-2:] == [
            "##[error]Process completed with exit code 255.",
            "##[error]Second error.",
        ]
        assert got.errors == ["Process completed with exit code 255.", "Second error."]


def test_window_without_lines_falls_back() -> None:
    steps = [dict(s) for s in FIVE_STEPS]
    steps[3]["started_at"], steps[3]["completed_at"] = (
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:01:00Z",
    )
    got = run(log(*FIVE_LOG), steps, 4)
    assert got.method == "error_fallback"
    assert got.text.splitlines()[-1] == "##[error]Process completed with exit code 255."
    never_started = [dict(s) for s in FIVE_STEPS]
    never_started[3]["started_at"] = None
    assert run(log(*FIVE_LOG), never_started, 4).method == "error_fallback"
    no_stamps = b"".join(line[29:] for line in log(*FIVE_LOG).splitlines(keepends=True))
    assert run(no_stamps, FIVE_STEPS, 4).method == "error_fallback"


def test_ambiguous_start_prefers_the_errors() -> None:
    # The earlier step started and ended in the failing step's only second, and the failing
    # step printed no marker: nothing tells where it began.
    steps = [
        step(1, "Set up job", "2026-11-26T10:00:00Z", "2026-11-26T10:00:05Z"),
        step(2, "Lint", "2026-11-26T10:00:05Z", "2026-11-26T10:00:05Z"),
        step(3, "Post cache", "2026-11-26T10:00:05Z", "2026-11-26T10:00:05Z", "failure"),
    ]
    data = log(
        ("10:00:04.0000000", "Complete job name: x"),
        ("10:00:05.1000000", "##[group]Run ruff check ."),
        ("10:00:05.2000000", "All checks passed!"),
        ("10:00:05.3000000", "Saving cache"),
        ("10:00:05.4000000", "##[error]Cache service responded with 503"),
    )
    got = run(data, steps, 3)
    assert got.method == "error_fallback"
    assert got.errors == ["Cache service responded with 503"]
    calm = run(data.replace(b"##[error]", b""), steps, 3)
    assert calm.method == "timestamps" and calm.text.endswith("Cache service responded with 503")


def test_truncation_keeps_every_error_and_the_lines_before_the_last() -> None:
    total = 10_000
    errors_at = {2_000: "first failure", 6_500: "second failure", total - 1: "exit code 1."}
    body = [("10:00:01.0000000", "##[group]Run pytest")]
    for i in range(1, total):
        out = f"##[error]{errors_at[i]}" if i in errors_at else f"line {i} " + "x" * (i % 90)
        body.append((f"10:{1 + i // 6000:02d}:{(i // 100) % 60:02d}.{i % 100:02d}00000", out))
    data = log(
        ("10:00:00.5000000", "Current runner version: '2.321.0'"),
        *body,
        ("11:00:00.0000000", "Cleaning up orphan processes"),
    )
    steps = [
        step(1, "Set up job", "2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"),
        step(2, "Tests", "2026-11-26T10:00:01Z", "2026-11-26T10:59:59Z", "failure"),
        step(3, "Complete job", "2026-11-26T11:00:00Z", "2026-11-26T11:00:00Z"),
    ]
    got = run(data, steps, 2, 65536)
    text = got.text.splitlines()
    assert got.truncated and len(text) <= 200 and len(got.text.encode()) <= 32 * 1024
    assert got.errors == list(errors_at.values())
    for message in errors_at.values():
        assert f"##[error]{message}" in text
    assert text[0] == "##[group]Run pytest"
    kept, omitted = 0, 0
    for line in text:
        match = _OMITTED.match(line)
        if match:
            omitted += int(match[1])
        else:
            kept += 1
    assert kept + omitted == total  # every line of the section is shown or counted
    assert text[1] == "... 1999 lines omitted ..." and text[2] == "##[error]first failure"
    assert text[3] == "... 4499 lines omitted ..." and text[4] == "##[error]second failure"
    context = text[6:-1]
    gap = _OMITTED.match(text[5])
    assert gap is not None and int(gap[1]) == total - 1 - 6_501 - len(context)
    assert context == [strip(line) for line in raw_lines(data)[total - len(context) : total]]
    assert len(context) > 100
    assert text[-1] == "##[error]exit code 1."


def test_many_errors_are_capped_and_counted() -> None:
    body = [
        (f"10:00:01.{i:07d}", f"##[error]error {i}" if i % 2 else f"out {i}") for i in range(400)
    ]
    got = run(log(*body), None, None)
    text = got.text.splitlines()
    assert len(got.errors) == 50
    assert got.errors[:2] == ["error 1", "error 3"] and got.errors[-1] == "error 399"
    assert len(text) <= 200 and len(got.text.encode()) <= 32 * 1024
    assert text[-1] == "##[error]error 399"
    shown = sum(1 for line in text if not _OMITTED.match(line))
    counted = sum(int(m[1]) for m in map(_OMITTED.match, text) if m)
    assert shown + counted == 400  # from the first line (no group line) to the last error


@pytest.mark.parametrize("chunk", [None, 65536, 1000])
def test_huge_line_is_cut_and_marked(chunk: int | None) -> None:
    steps = [step(1, "Run", "2026-11-26T10:00:00Z", "2026-11-26T10:00:01Z", "failure")]
    huge = b"2026-11-26T10:00:00.1000000Z " + b"y" * (1 << 20)  # no newline at all
    got = run(huge, steps, 1, chunk)
    assert got.lines_seen == 1 and got.truncated
    assert len(got.text.encode()) <= 32 * 1024
    cut = re.fullmatch(r"(y+) \.\.\.\[line truncated: (\d+) bytes cut\]", got.text)
    assert cut is not None and len(cut[1]) + int(cut[2]) == 1 << 20
    assert len(cut[1]) > 4000
    # The same inside a log, followed by an error.
    more = huge + b"\r\n2026-11-26T10:00:00.2000000Z ##[error]too long\r\n"
    both = run(more, steps, 1, chunk)
    assert both.lines_seen == 2 and both.errors == ["too long"]
    assert len(both.text.encode()) <= 32 * 1024 and "bytes cut]" in both.text
    tiny = run(more, steps, 1, chunk, max_lines=5, max_bytes=300)
    assert len(tiny.text.encode()) <= 300 and "##[error]too long" in tiny.text


def test_many_huge_lines_stay_bounded() -> None:
    line = b"2026-11-26T10:00:00.1000000Z " + b"z" * 200_000 + b"\n"
    builder = ExcerptBuilder(None, None)
    tracemalloc.start()
    try:
        for _ in range(100):  # 20 MB of 200 kB lines, one chunk each
            builder.feed(line)
        builder.feed(b"2026-11-26T10:00:00.2000000Z ##[error]x\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    assert builder.finish().lines_seen == 101


def _big_log(total: int, errors: bool) -> Iterator[bytes]:
    """``total`` bytes of log in 64 KiB chunks, made up as it goes."""
    block = b"".join(
        b"2026-11-26T10:00:%02d.%07dZ \x1b[32mPASSED\x1b[0m tests/test_%d.py::test_case\r\n"
        % (1 + i // 600, i * 1000, i)
        for i in range(580)
    )
    if errors:
        block += b"2026-11-26T10:00:01.9999999Z ##[group]Run ./retry.sh\r\n"
        block += b"2026-11-26T10:00:01.9999999Z ##[error]flaky\r\n"
    sent = 0
    yield b"2026-11-26T10:00:00.5000000Z Current runner version: '2.321.0'\r\n"
    while sent < total:
        yield block
        sent += len(block)
    yield b"2026-11-26T10:00:02.0000000Z ##[error]Process completed with exit code 1.\r\n"


BIG_STEPS = [
    step(1, "Set up job", "2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"),
    step(2, "Tests", "2026-11-26T10:00:01Z", "2026-11-26T10:00:02Z", "failure"),
]


@pytest.mark.parametrize(
    ("steps", "errors"),
    [(BIG_STEPS, False), (None, True)],
    ids=["failing-step-is-the-whole-log", "fallback-with-errors-everywhere"],
)
def test_memory_stays_bounded_on_a_50_mib_log(steps: Steps | None, errors: bool) -> None:
    builder = ExcerptBuilder(steps, 2 if steps else None)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for chunk in _big_log(50 << 20, errors):
            builder.feed(chunk)
        got = builder.finish()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert got.lines_seen > 500_000
    assert got.text.splitlines()[-1] == "##[error]Process completed with exit code 1."
    assert len(got.text.encode()) <= 32 * 1024 and len(got.text.splitlines()) <= 200


@pytest.mark.timeout(10)
@pytest.mark.parametrize("length", [100, 121, 125, 129, 130, 131, 400, 5000])
@pytest.mark.parametrize(("max_lines", "max_bytes"), [(2, 32 * 1024), (200, 300), (3, 200)])
def test_error_lines_that_cannot_all_fit_end_the_search(
    length: int, max_lines: int, max_bytes: int
) -> None:
    body = [("10:00:01.0000000", "##[group]Run ./check.sh")]
    body += [(f"10:00:01.{i:07d}", f"##[error]{i:03d}" + "e" * length) for i in range(1, 40)]
    got = run(log(*body), None, None, max_lines=max_lines, max_bytes=max_bytes)
    assert len(got.text.splitlines()) <= max_lines
    assert len(got.text.encode()) <= max_bytes
    assert got.text.splitlines()[-1].startswith("##[error]039")


def _simulated_job(rng: random.Random) -> tuple[bytes, Steps, int, list[bytes]]:
    """A job as a runner writes it: steps one after another, each printing its start marker a
    few ms after it starts, many of them sharing seconds; one step fails with an error as its
    last line; after it, post steps and "Complete job" (some steps skipped)."""
    start = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC).timestamp() + rng.random()
    clock = start

    def stamp() -> bytes:
        second = math.floor(clock)
        frac = min(9_999_999, round((clock - second) * 1e7))
        when = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{when}.{frac:07d}Z ".encode()

    def api(moment: float) -> str:
        return datetime.fromtimestamp(math.floor(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    n = rng.randint(3, 8)
    failing = rng.randint(2, n - 1)
    steps: Steps = []
    own: list[bytes] = []
    data: list[bytes] = []
    for k in range(1, n + 1):
        if failing < k < n and rng.random() < 0.3:
            steps.append(step(k, f"s{k}", api(clock), api(clock), "skipped"))
            continue
        began = clock
        clock += rng.choice([0.0001, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05])
        first = {1: b"Current runner version: '2.321.0'", n: b"Cleaning up orphan processes"}
        if k > failing:
            first.setdefault(k, rng.choice([b"Post job cleanup.", b"##[group]Run cleanup"]))
        mine = [stamp() + first.get(k, b"##[group]Run step %d \x1b[36;1mcmd\x1b[0m" % k)]
        for j in range(rng.choice([0, 1, 3, 10, 40])):
            clock += rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 0.4, 0.9, 1.3])
            text = b"out %d.%d \xe2\x9c\x94" % (k, j)
            mine.append(text if rng.random() < 0.1 else stamp() + text)
        if k == failing:
            clock += rng.choice([0.001, 0.3])
            mine.append(stamp() + b"##[error]Process completed with exit code 1.")
        clock += rng.choice([0.0, 0.001, 0.05, 0.3])
        status = "failure" if k == failing else "success"
        steps.append(step(k, f"s{k}", api(began), api(clock), status))
        clock += rng.choice([0.0, 0.001, 0.01, 0.2])
        data += mine
        if k == failing:
            own = mine
    eol = rng.choice([b"\n", b"\r\n"])
    return eol.join(data) + eol, steps, failing, own


def test_simulated_runner_jobs() -> None:
    """Ground truth from a simulated runner. The one ambiguity left: when two consecutive
    steps both print their first line across a second boundary, one earlier marker line can
    lead the section; never more, and the error is always there."""
    exact = 0
    for seed in range(400):
        rng = random.Random(seed)
        data, steps, failing, own = _simulated_job(rng)
        want = [strip(line) for line in own]
        got = run(data, steps, failing, rng.choice([5, 64, 4096, len(data)]), max_lines=1000)
        lines = got.text.splitlines()
        assert got.method == "timestamps", seed
        assert lines[-1] == "##[error]Process completed with exit code 1.", seed
        if lines == want:
            exact += 1
        else:
            assert lines[1:] == want and lines[0].startswith("##[group]Run step"), seed
    assert exact >= 396
