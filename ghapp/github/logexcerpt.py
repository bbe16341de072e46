"""The failing step's section of a GitHub Actions job log, found in one streaming pass.

Pure: bytes in, an :class:`Excerpt` out, no I/O. Memory is bounded by ``max_lines`` and the
per-line cap, never by the size of the log (a 100 MiB log is read once, chunk by chunk).

How lines are attributed to the failing step F (DESIGN.md, "Precise rules"):

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

from ghapp.github.logsection import (
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
_GROUP_RUN = b"##[group]Run "
# What each kind of step prints first: run and action steps, post steps, "Complete job",
# "Set up job".
_RUNNER_MARKS = (b"Post job cleanup.", b"Cleaning up orphan processes", b"Current runner version")
_MARKS = (_GROUP_RUN, *_RUNNER_MARKS)
_NO_MARK, _GROUP, _RUNNER = 0, 1, 2
_SCAN_BACK = 16  # lines searched from a chunk's end for its newest timestamp
_MAX_PROV_MARKS = 64

# States of the timestamp search.
_BEFORE, _PROV, _IN, _DONE, _OFF = range(5)


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


def _lines_with(chunk: bytes, lines: list[bytes], needle: bytes) -> list[int]:
    """Indexes of the lines that contain ``needle``; ``lines`` is ``chunk`` split, its first
    line prefixed by the previous chunk's unfinished one."""
    # Search the chunk, not each line: ``find`` and ``count`` run in C over the whole buffer,
    # where a per-line ``in`` costs hundreds of nanoseconds a line.
    found = [0] if needle in lines[0] else []
    index, counted = 0, 0
    pos = chunk.find(needle)
    while pos >= 0:
        index += chunk.count(b"\n", counted, pos)
        counted = pos
        if index >= len(lines):
            break  # in the unfinished last line: seen again with the next chunk
        if not found or found[-1] != index:
            found.append(index)
        end = chunk.find(b"\n", pos)
        if end < 0:
            break
        pos = chunk.find(needle, end)
    return found


def _starts(line: bytes, prefix: bytes) -> bool:
    """Whether a line's text (after its timestamp, if any) starts with ``prefix``."""
    return line.startswith(prefix, content_offset(line) if has_timestamp(line) else 0)


def _classify(line: bytes, last_ts: bytes | None) -> tuple[bytes | None, bool, int]:
    """A line's timestamp second (or the one before it), whether it is an error, its marker."""
    if has_timestamp(line):
        ts: bytes | None = line[:19]
        start = content_offset(line)
    else:
        ts, start = last_ts, 0
    if line.startswith(ERROR_MARK, start):
        return ts, True, _NO_MARK
    if line.startswith(_MARKS, start):
        return ts, False, _GROUP if line.startswith(_GROUP_RUN, start) else _RUNNER
    return ts, False, _NO_MARK


class ExcerptBuilder:
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
        self._state = _BEFORE if win else _OFF
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
        if self._state in (_DONE, _OFF) and self._fb is None:
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
        if state == _PROV:
            self._slow(lines)
            return
        if state in (_BEFORE, _IN) and win is not None:
            found = self._newest_ts(lines)
            if found is NEVER:
                self._slow(lines)
                return
            newest = found or newest
            # Timestamps do not go backwards: if the newest one is on this side of the next
            # boundary, every line of the chunk is.
            if state == _BEFORE and newest is not None and newest >= win.prev_lo:
                self._slow(lines)
                return
            if state == _IN and (newest is None or newest >= (win.e_lo or win.hi)):
                self._slow(lines)
                return
        self._last_ts = newest
        sec = self._sec if state == _IN else None
        if fb is None and sec is None:
            return
        # Substring scans run at memory speed; a hit means a few lines need a closer look.
        has_err = ERROR_MARK in chunk or ERROR_MARK in lines[0]
        has_run = fb is not None and not self._fb_err
        has_run = has_run and (_GROUP_RUN in chunk or _GROUP_RUN in lines[0])
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
            events += [(i, True) for i in _lines_with(chunk, lines, ERROR_MARK)]
        if has_run:
            events += [(i, False) for i in _lines_with(chunk, lines, _GROUP_RUN)]
        events.sort()
        prev = 0
        for i, is_err in events:
            line = lines[i]
            if not _starts(line, ERROR_MARK if is_err else _GROUP_RUN):
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
            # _classify, inlined: this loop is the slow path's whole cost.
            if len(line) >= 20 and line[10] == 84 and line[4] == 45 and line[13] == 58:
                ts: bytes | None = line[:19]
                self._last_ts = ts
                start = 29 if len(line) > 28 and line[28] == 32 else content_offset(line)
            else:
                ts, start = self._last_ts, 0
            is_err = line.startswith(ERROR_MARK, start)
            mark = _NO_MARK
            if not is_err and line.startswith(_MARKS, start):
                mark = _GROUP if line.startswith(_GROUP_RUN, start) else _RUNNER
            fb = self._fb
            if fb is not None:
                if is_err:
                    if not self._fb_err:
                        self._fb_err = True
                        if fb.head is None:
                            fb.rebase()
                    fb.add_error(line)
                elif mark == _GROUP and not self._fb_err:
                    fb.restart(line)
                else:
                    fb.add(line)
            state = self._state
            if state == _BEFORE:
                if ts is not None and ts >= lo:
                    self._before(line, ts, is_err, mark)
                elif mark and ts is not None and ts >= prev_lo:
                    self._marks_before += 1
            elif state == _IN:
                sec = self._sec
                if ts is not None and ts < inner and sec is not None:
                    if is_err:
                        sec.add_error(line)
                    else:
                        sec.add(line)
                else:
                    self._inside(line, ts, is_err, mark)
            elif state == _PROV:
                self._provisional(line, ts, is_err, mark)

    # -- the timestamp search ----------------------------------------------------------

    def _before(self, line: bytes, ts: bytes | None, is_err: bool, mark: int) -> None:
        win = self._win
        assert win is not None
        if ts is None or ts < win.lo:
            return
        if ts >= win.hi:
            self._state = _OFF  # the window holds no line: the fallback decides
        elif win.b_hi is not None and ts < win.b_hi:
            self._state = _PROV
            # Steps that started in the second before may print their marker in this one
            # (a step's first line can come a little after its start): those not seen yet.
            self._prov_expect = win.k_start + max(0, win.k_prev - self._marks_before)
            self._provisional(line, ts, is_err, mark)
        else:
            self._open(line, is_err)

    def _open(self, line: bytes | None, is_err: bool, ambiguous: bool = False) -> None:
        """Start F's section at ``line``."""
        self._sec = Section(self._max_lines, head=line)
        self._state = _IN
        self._ambiguous = ambiguous
        if not ambiguous:
            self._fb = None  # timing settled it: the fallback's memory goes
        self._prov.clear()
        self._prov_marks.clear()
        if line is not None:
            if is_err:
                self._sec.add_error(line)
            else:
                self._sec.add(line)

    def _provisional(self, line: bytes, ts: bytes | None, is_err: bool, mark: int) -> None:
        """A line of the shared first second, where F's start is not known yet."""
        win = self._win
        assert win is not None and win.b_hi is not None
        if ts is not None and ts >= win.b_hi:
            if ts < win.hi:
                self._open(line, is_err)  # the earlier lines of that second were not F's
            else:
                self._resolve_ambiguous()
                self._inside(line, ts, is_err, mark)
            return
        if mark and self._prov_mark_count == self._prov_expect:
            self._open(line, is_err)  # F's own start marker
            return
        self._prov.append(line)
        if mark:
            self._prov_mark_count += 1
            if len(self._prov_marks) < _MAX_PROV_MARKS:
                self._prov_marks.append((self._prov_n, line))
        self._prov_n += 1

    def _resolve_ambiguous(self) -> None:
        """No start found in or after the shared second: keep it from its last marker."""
        start, head = self._prov_marks[-1] if self._prov_marks else (0, None)
        first = self._prov_n - len(self._prov)
        replay = list(self._prov)
        self._open(None, False, ambiguous=True)
        sec = self._sec
        assert sec is not None
        if start >= first:
            replay = replay[start - first :]
        elif head is not None:
            sec.head = head
            sec.add(head)
            sec.skip(first - start - 1)
        else:
            sec.skip(first - start)
        last_ts = self._win.lo if self._win else None
        for i, line in enumerate(replay):
            ts, is_err, mark = _classify(line, last_ts)
            last_ts = ts
            if i == 0 and sec.count == 0:
                sec.head = line
                if is_err:
                    sec.add_error(line)
                else:
                    sec.add(line)
            else:
                self._inside(line, ts, is_err, mark)

    def _inside(self, line: bytes, ts: bytes | None, is_err: bool, mark: int) -> None:
        """A line after F's section opened."""
        win, sec = self._win, self._sec
        assert win is not None and sec is not None
        if ts is not None and ts >= win.hi:
            self._close()
        elif win.e_lo is not None and ts is not None and ts >= win.e_lo:
            if is_err:
                self._promote()
                sec.add_error(line)
            elif mark and (sec.n_errors or mark == _RUNNER):
                self._close()  # the next step's start marker
            elif self._held_n or mark or sec.n_errors:
                self._held.append(line)  # F's or the next step's: an error would tell
                self._held_n += 1
            else:
                sec.add(line)
        elif is_err:
            sec.add_error(line)
        else:
            sec.add(line)

    def _promote(self) -> None:
        """Held lines were F's after all (an error of F's followed them)."""
        sec = self._sec
        if self._held_n and sec is not None:
            sec.skip(self._held_n - len(self._held))
            sec.add_many(list(self._held))
        self._held.clear()
        self._held_n = 0

    def _close(self) -> None:
        self._held.clear()
        self._held_n = 0
        self._state = _DONE

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
            if self._state in (_DONE, _OFF) and self._fb is None:
                self._lines += 1
            else:
                self._process([line], line)
        if self._state == _PROV:
            self._resolve_ambiguous()
        if self._state == _IN:
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
