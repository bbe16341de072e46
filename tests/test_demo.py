"""`ghapp demo`, README's first command: both verdicts, signed, with nothing else to install."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


async def test_demo_prints_a_success_and_a_failure_both_signed(cli: Cli) -> None:
    code, out, _ = await cli("demo")
    assert code == 0
    lines = out.splitlines()
    success = next(line for line in lines if line.strip().startswith("success"))
    failure = next(line for line in lines if line.strip().startswith("failure"))
    assert "deployed to https://" in success and "[signature ok]" in success
    assert "reason=failure" in failure and "[signature ok]" in failure
    assert "##[error]" in out  # the failing step's log excerpt is shown
    # Why it failed and who should act: the SSH refusal is the infrastructure's, not the code's.
    assert "cause: infrastructure (not retryable, rule ssh.connection-refused)" in out
    assert "hint:  " in out
