"""The failing step's section of a GitHub Actions job log, found in one streaming pass.

Pure: bytes in, an :class:`Excerpt` out, no I/O. Memory is bounded by ``max_lines`` and the
per-line cap, never by the size of the log (a 100 MiB log is read once, chunk by chunk).

How lines are attributed to the failing step F (docs/reference/deployment.md, "Failed jobs"):

* Its window is ``[F.started_at, F.completed_at + 1 s)``: API times are cut to whole seconds,
  log timestamps are not. Timestamps are compared as fixed-width ``YYYY-MM-DDTHH:MM:SS`` byte
  strings against bounds rendered once, never parsed per line. Lines without a timestamp
  (continuations) go with the line before them. Timestamps are assumed not to go backwards.
* Shared first second: when an earlier step ended in the second F started, that second also
  holds the earlier step's last lines. Every step prints a start marker first
  (``##[group]Run ...``; ``Post job cleanup.``; ``Cleaning up orphan processes``;
  ``Current runner version`` for "Set up job"), so F's section opens at the (k+1)-th marker of
  that second, k being the earlier steps whose marker is due there: those that started in it,
  plus those that started in the second before and whose marker was not seen there yet (a
  step's first line comes a few ms after its start, sometimes across a second boundary).
  With too few markers there, the section opens at F's first line after that second; with no
  line after it either, timing is ambiguous and the error fallback wins when there are errors.
* Shared last second: when a later step started in the second F ended, a marker in that
  second closes F's section once F has printed an error (a runner marker closes it anyway).
  Lines there after F's last error are held back, and kept only if another error follows:
  F's final ``##[error]`` is its last line, and what follows is the next step's preamble.
  A ``##[group]Run`` there before any error may be a nested step of a composite action, so
  it is held back too and kept if an error follows.
* Fallback (``method="error_fallback"``), when there is no usable timing (no steps, no
  failing step, no timestamps, no line in the window, ambiguous start): the lines from the
  last ``##[group]Run`` before the first ``##[error]`` (or, without one, the ``max_lines``
  lines before it) up to the last ``##[error]``. ``method="empty"``: neither found anything.

Checked against GitHub's own split (``swfz-run-logs.zip``: each step's log beside the job's):
every step of every job is cut out exactly. A simulated runner with many sub-second steps gets
the start wrong only when two consecutive steps both print their first line across a second
boundary (one extra line at the top, ~0.1% of jobs there).

Speed: chunks are split with ``bytes.split`` and, unless the chunk can move the search (its
newest timestamp crosses a window boundary), handled in bulk: C-level substring scans for
``##[error]``/``##[group]Run``, ``deque.extend`` into fixed-size rings; only the few event
lines are looked at one by one. After the section closes the rest is only counted.

The text keeps every ``##[...]`` marker verbatim (``##[group]Run`` says what ran,
``##[endgroup]`` and ``##[error]`` show structure) and removes timestamps, ANSI codes and CRs.
Lines are joined with ``\\n`` (no trailing newline). Over the limits, every error line is kept,
then the first line, then the lines just before the last error, and each run of left-out
lines becomes ``... N lines omitted ...``. A line longer than the per-line cap is cut and
ends with ``...[line truncated: N bytes cut]``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ghapp.core.logs.marks import (
    GROUP,
    GROUP_RUN,
    MARKS,
    NO_MARK,
    RUNNER,
    lines_with,
    starts,
)
from ghapp.core.logs.search import BEFORE, DONE, IN, OFF, PROV, StepSearch
from ghapp.core.logs.section import (
    CUT_SUFFIX,
    ERROR_MARK,
    NEVER,
    Section,
    content_offset,
    has_timestamp,
    render,
    step_window,
)

__all__ = ["Excerpt", "ExcerptBuilder"]

Method = Literal["timestamps", "error_fallback", "empty"]

_BOM = b"\xef\xbb\xbf"
_SCAN_BACK = 16  # lines searched from a chunk's end for its newest timestamp


@dataclass(frozen=True, slots=True)
class Excerpt:
    """The failing step's log section, ready for ``failed_jobs[].log_excerpt``."""

    text: str
    errors: list[str] = field(default_factory=list)
    first_error: str | None = None
    truncated: bool = False
    lines_seen: int = 0
    method: Method = "empty"

    def __post_init__(self) -> None:
        if self.first_error is None and self.errors:
            object.__setattr__(self, "first_error", self.errors[0])


class ExcerptBuilder(StepSearch):
    """Feed a job log's bytes in chunks of any size, then ``finish()`` for the excerpt."""

    def __init__(
        self,
        steps: Sequence[Mapping[str, Any]] | None = None,
        failed_step_number: int | None = None,
        max_lines: int = 200,
        max_bytes: int = 32 * 1024,
    ) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("max_lines and max_bytes must be positive")
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        # A kept line never needs more than the whole budget; 4 KiB keeps errors readable.
        self._cap = 29 + max(256, min(4096, max_bytes // 4))
        win = (
            step_window(steps, failed_step_number)
            if steps and failed_step_number is not None
            else None
        )
        self._win = win
        self._state = BEFORE if win else OFF
        self._sec: Section | None = None
        self._ambiguous = False
        self._fb: Section | None = Section(max_lines)  # dropped once timing settles it
        self._fb_err = False
        self._prov: deque[bytes] = deque(maxlen=max_lines)
        self._prov_n = 0
        self._prov_marks: list[tuple[int, bytes]] = []
        self._prov_mark_count = 0
        self._prov_expect = 0  # start markers of earlier steps still to come in that second
        self._marks_before = 0  # start markers seen in the second before the window
        self._held: deque[bytes] = deque(maxlen=max_lines)
        self._held_n = 0
        self._last_ts: bytes | None = None
        self._carry = b""
        self._carry_cut = 0
        self._bom: bytes | None = b""  # bytes seen before the BOM check, None once done
        self._lines = 0
        self._result: Excerpt | None = None

    # -- input -------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the log; a chunk may end anywhere, even inside a character."""
        if self._result is not None:
            raise RuntimeError("feed() after finish()")
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # a bytearray or memoryview: lines must not alias its buffer
        if self._bom is not None:
            head = self._bom + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._bom = head
                return
            self._bom = None
            chunk = head[3:] if head.startswith(_BOM) else head
        if not chunk:
            return
        if self._state in (DONE, OFF) and self._fb is None:
            # Nothing left to find: count lines at memchr speed.
            last = chunk.rfind(b"\n")
            if last < 0:
                self._add_carry(chunk)
            else:
                self._lines += chunk.count(b"\n")
                self._carry, self._carry_cut = b"", 0
                self._add_carry(chunk[last + 1 :])
            return
        if b"\n" not in chunk:
            self._add_carry(chunk)
            return
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if self._carry or self._carry_cut:
            lines[0] = self._carry + lines[0]
            if self._carry_cut or len(lines[0]) > self._cap:
                lines[0] = self._cut(lines[0], self._carry_cut)
            self._carry, self._carry_cut = b"", 0
        self._process(lines, chunk)
        self._add_carry(tail)

    def _add_carry(self, data: bytes) -> None:
        """Keep the unfinished last line, at most ``cap`` bytes of it."""
        carry = self._carry + data if self._carry else bytes(data)
        if len(carry) > self._cap:
            self._carry_cut += len(carry) - self._cap
            carry = carry[: self._cap]
        self._carry = carry

    def _cut(self, line: bytes, extra: int) -> bytes:
        """A line shortened to the cap, on a UTF-8 character boundary, marked."""
        # Leave room for the mark, so that a cut line is never over the cap (and never cut twice).
        keep = min(self._cap - 48, len(line))
        while keep > 0 and keep < len(line) and (line[keep] & 0xC0) == 0x80:
            keep -= 1  # do not split a multi-byte character
        cut = len(line) - keep + extra
        return line[:keep] + b" ...[line truncated: %d" % cut + CUT_SUFFIX

    def _process(self, lines: list[bytes], chunk: bytes) -> None:
        """Route complete lines: in bulk unless the chunk may move the timestamp search."""
        self._lines += len(lines)
        if not lines:
            return
        state, win, fb = self._state, self._win, self._fb
        newest = self._last_ts
        if state == PROV:
            self._slow(lines)
            return
        if state in (BEFORE, IN) and win is not None:
            found = self._newest_ts(lines)
            if found is NEVER:
                self._slow(lines)
                return
            newest = found or newest
            # Timestamps do not go backwards: if the newest one is on this side of the next
            # boundary, every line of the chunk is.
            if state == BEFORE and newest is not None and newest >= win.prev_lo:
                self._slow(lines)
                return
            if state == IN and (newest is None or newest >= (win.e_lo or win.hi)):
                self._slow(lines)
                return
        self._last_ts = newest
        sec = self._sec if state == IN else None
        if fb is None and sec is None:
            return
        # Substring scans run at memory speed; a hit means a few lines need a closer look.
        has_err = ERROR_MARK in chunk or ERROR_MARK in lines[0]
        has_run = fb is not None and not self._fb_err
        has_run = has_run and (GROUP_RUN in chunk or GROUP_RUN in lines[0])
        if has_err or has_run:
            self._segments(chunk, lines, has_err, has_run, fb, sec)
            return
        # Only the last max_lines lines can stay in a ring: cap those that are too long.
        tail = lines[-self._max_lines :]
        if len(chunk) > self._cap and max(map(len, tail)) > self._cap:
            first = len(lines) - len(tail)
            for k, line in enumerate(tail, first):
                if len(line) > self._cap:
                    lines[k] = self._cut(line, 0)
        if fb is not None:
            fb.add_many(lines)
        if sec is not None:
            sec.add_many(lines)

    def _segments(
        self,
        chunk: bytes,
        lines: list[bytes],
        has_err: bool,
        has_run: bool,
        fb: Section | None,
        sec: Section | None,
    ) -> None:
        """A chunk with errors or fallback markers but no window boundary: bulk-add the runs
        of plain lines between the few lines that matter."""
        cap = self._cap
        if max(map(len, lines)) > cap:
            lines = [self._cut(line, 0) if len(line) > cap else line for line in lines]
        events: list[tuple[int, bool]] = []
        if has_err:
            events += [(i, True) for i in lines_with(chunk, lines, ERROR_MARK)]
        if has_run:
            events += [(i, False) for i in lines_with(chunk, lines, GROUP_RUN)]
        events.sort()
        prev = 0
        for i, is_err in events:
            line = lines[i]
            if not starts(line, ERROR_MARK if is_err else GROUP_RUN):
                continue  # the marker was inside the text, not at its start
            if i > prev:
                run = lines[prev:i]
                if fb is not None:
                    fb.add_many(run)
                if sec is not None:
                    sec.add_many(run)
            if fb is not None:
                if is_err:
                    if not self._fb_err:
                        self._fb_err = True
                        if fb.head is None:
                            fb.rebase()
                    fb.add_error(line)
                elif not self._fb_err:
                    fb.restart(line)
                else:
                    fb.add(line)
            if sec is not None:
                if is_err:
                    sec.add_error(line)
                else:
                    sec.add(line)
            prev = i + 1
        if prev < len(lines):
            run = lines[prev:]
            if fb is not None:
                fb.add_many(run)
            if sec is not None:
                sec.add_many(run)

    @staticmethod
    def _newest_ts(lines: list[bytes]) -> bytes | None:
        """The newest timestamp near a chunk's end; None if it has none, ``NEVER`` if unsure."""
        for i in range(len(lines) - 1, max(-1, len(lines) - 1 - _SCAN_BACK), -1):
            if has_timestamp(lines[i]):
                return lines[i][:19]
        return NEVER if len(lines) > _SCAN_BACK else None

    def _slow(self, lines: list[bytes]) -> None:
        """Line by line: every transition, marker and error is handled here."""
        cap = self._cap
        win = self._win
        lo = win.lo if win else NEVER
        prev_lo = win.prev_lo if win else NEVER
        inner = (win.e_lo or win.hi) if win else NEVER  # below it an IN line is plainly F's
        for line in lines:
            if len(line) > cap:
                line = self._cut(line, 0)
            # classify, inlined: this loop is the slow path's whole cost.
            if len(line) >= 20 and line[10] == 84 and line[4] == 45 and line[13] == 58:
                ts: bytes | None = line[:19]
                self._last_ts = ts
                start = 29 if len(line) > 28 and line[28] == 32 else content_offset(line)
            else:
                ts, start = self._last_ts, 0
            is_err = line.startswith(ERROR_MARK, start)
            mark = NO_MARK
            if not is_err and line.startswith(MARKS, start):
                mark = GROUP if line.startswith(GROUP_RUN, start) else RUNNER
            fb = self._fb
            if fb is not None:
                if is_err:
                    if not self._fb_err:
                        self._fb_err = True
                        if fb.head is None:
                            fb.rebase()
                    fb.add_error(line)
                elif mark == GROUP and not self._fb_err:
                    fb.restart(line)
                else:
                    fb.add(line)
            state = self._state
            if state == BEFORE:
                if ts is not None and ts >= lo:
                    self._before(line, ts, is_err, mark)
                elif mark and ts is not None and ts >= prev_lo:
                    self._marks_before += 1
            elif state == IN:
                sec = self._sec
                if ts is not None and ts < inner and sec is not None:
                    if is_err:
                        sec.add_error(line)
                    else:
                        sec.add(line)
                else:
                    self._inside(line, ts, is_err, mark)
            elif state == PROV:
                self._provisional(line, ts, is_err, mark)

    # -- output ------------------------------------------------------------------------

    def finish(self) -> Excerpt:
        """End of the log: the excerpt (calling it again returns the same one)."""
        if self._result is not None:
            return self._result
        if self._bom:
            pending, self._bom = self._bom, None
            self._add_carry(pending)
        self._bom = None
        if self._carry or self._carry_cut:
            line = self._cut(self._carry, self._carry_cut) if self._carry_cut else self._carry
            self._carry, self._carry_cut = b"", 0
            if self._state in (DONE, OFF) and self._fb is None:
                self._lines += 1
            else:
                self._process([line], line)
        if self._state == PROV:
            self._resolve_ambiguous()
        if self._state == IN:
            self._close()
        self._result = self._build()
        return self._result

    def _build(self) -> Excerpt:
        sec, fb = self._sec, self._fb
        limits = (self._max_lines, self._max_bytes)
        if fb is not None and self._fb_err and (sec is None or self._ambiguous):
            text, errors, cut = render(fb, fb.frozen_end + 1, *limits)
            method: Method = "error_fallback"
        elif sec is not None:
            text, errors, cut = render(sec, sec.count, *limits)
            method = "timestamps"
        else:
            text, errors, cut, method = "", [], False, "empty"
        return Excerpt(text, errors, None, cut, self._lines, method)
