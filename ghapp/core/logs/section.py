"""Step windows, bounded memory of one log section, and its rendering into the excerpt text.

Internal helpers of :mod:`ghapp.core.logs.excerpt` (split out to keep that module readable):
the failing step's window from the jobs API's step times, and one section's bounded memory.
A :class:`Section` numbers its lines 0, 1, 2, ... and keeps only what the excerpt can show:
the first line, up to ``ERRORS_HEAD + ERRORS_TAIL`` error lines, the last ``max_lines`` lines up
to and including the last error (``frozen``) and the last ``max_lines`` lines after it (``ring``).
Lines are stored raw (timestamp, ANSI and CR included): decoding and stripping cost something,
so they are paid only for the few lines that end up in the excerpt.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ghapp.core.times import github_time
from ghapp.core.untrusted import clean

ERROR_MARK = b"##[error]"
# Errors kept per section: the first ones (the summary quotes the first) and the last ones
# (the final "Process completed with exit code N." says how it ended); the rest are counted.
ERRORS_HEAD = 25
ERRORS_TAIL = 25
# An error line longer than this (characters) may be shortened so that every error fits.
MIN_ERROR_CHARS = 120
CUT_SUFFIX = b" bytes cut]"
NEVER = b"\xff"  # above every timestamp: the end of an open-ended window
_SHORTENED = " ...[cut]"  # ends an error line shortened so that every error fits



@dataclass(frozen=True, slots=True)
class Window:
    """The failing step's seconds, as ``YYYY-MM-DDTHH:MM:SS`` bytes comparable with log lines."""

    lo: bytes  # F's first second
    hi: bytes  # the second after F's last one (exclusive bound)
    b_hi: bytes | None  # end of the shared first second, if an earlier step ended in it
    e_lo: bytes | None  # start of the shared last second, if a later step started in it
    k_start: int  # earlier steps that started in the shared first second
    k_prev: int  # earlier steps that started in the second before it
    prev_lo: bytes  # that second before it


def _when(value: Any) -> datetime | None:
    """An API time as an aware UTC datetime cut to the second, or None."""
    moment = github_time(value)
    return None if moment is None else moment.astimezone(UTC).replace(microsecond=0)


def _key(moment: datetime) -> bytes:
    """A second as the first 19 bytes of a log line's timestamp."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S").encode("ascii")


def step_window(steps: Sequence[Mapping[str, Any]], number: int) -> Window | None:
    """The failing step's window and shared seconds, or None without usable times."""
    failed = next((s for s in steps if s.get("number") == number), None)
    start = _when(failed.get("started_at")) if failed else None
    if failed is None or start is None:
        return None
    ran = []
    for step in steps:
        began = _when(step.get("started_at"))
        if step is failed or began is None or step.get("conclusion") == "skipped":
            continue  # skipped steps print nothing
        ran.append((int(step.get("number") or 0), began, _when(step.get("completed_at")) or began))
    earlier = [(b, e) for n, b, e in ran if n < number]
    later = [b for n, b, _ in ran if n > number]
    end = _when(failed.get("completed_at")) or (min(later) if later else None)
    second = timedelta(seconds=1)
    if end is not None and end < start:
        end = start
    b_hi = e_lo = None
    k_start = k_prev = 0
    if earlier and max(e for _, e in earlier) >= start:
        shared_end = max(e for _, e in earlier) + second
        b_hi = _key(min(shared_end, end + second) if end else shared_end)
        k_start = sum(1 for b, _ in earlier if b >= start)
        k_prev = sum(1 for b, _ in earlier if b == start - second)
    if later and end is not None and min(later) <= end:
        e_lo = _key(max(min(later), start))
    hi = _key(end + second) if end else NEVER
    prev_lo = _key(start - second) if b_hi else _key(start)
    return Window(_key(start), hi, b_hi, e_lo, k_start, k_prev, prev_lo)


def has_timestamp(line: bytes) -> bool:
    """Whether a raw log line starts with GitHub's ``YYYY-MM-DDTHH:MM:SS`` timestamp."""
    # Fixed positions instead of a regex: this runs on hot paths.
    return (
        len(line) >= 20 and line[10] == 84 and line[4] == 45 and line[13] == 58 and line[16] == 58
    )


def content_offset(line: bytes) -> int:
    """Where the text of a timestamped line starts (after ``...Z`` and one space)."""
    if len(line) > 28 and line[28] == 32:  # the usual 7 fractional digits
        return 29
    space = line.find(b" ", 19, 40)
    return space + 1 if space > 0 else len(line)


def render_line(raw: bytes) -> str:
    """A raw log line as the excerpt shows it: no timestamp, no escape sequence or control
    character, and of a line redrawn with CRs (progress bars) only what stays visible."""
    start = content_offset(raw) if has_timestamp(raw) else 0
    return clean(raw[start:].decode("utf-8", "replace"))


def error_message(raw: bytes) -> str:
    """The message of an ``##[error]`` line, marker removed."""
    text = render_line(raw)
    if text.startswith("##[error]"):
        text = text[len("##[error]") :]
    return text.strip()


def omitted_line(count: int) -> str:
    """The line that stands for ``count`` lines left out of the excerpt."""
    return f"... {count} lines omitted ..."


class Section:
    """One section of a log (a step's lines), held in bounded memory."""

    __slots__ = (
        "_err_head",
        "_err_tail",
        "count",
        "frozen",
        "frozen_end",
        "head",
        "n_errors",
        "ring",
    )

    def __init__(self, max_lines: int, head: bytes | None = None) -> None:
        self.head = head  # line 0, kept because it says what ran (``##[group]Run <command>``)
        self.count = 0  # lines of the section so far
        self.ring: deque[bytes] = deque(maxlen=max_lines)  # lines after the last error
        self.frozen: deque[bytes] = deque(maxlen=max_lines)  # lines up to the last error
        self.frozen_end = -1  # number of the last error line
        self.n_errors = 0
        self._err_head: list[tuple[int, bytes]] = []
        self._err_tail: deque[tuple[int, bytes]] = deque(maxlen=ERRORS_TAIL)

    def add(self, line: bytes) -> None:
        """Append a line that is not an error."""
        self.ring.append(line)
        self.count += 1

    def add_many(self, lines: list[bytes]) -> None:
        """Append lines that are not errors (C-speed ``deque.extend``: the bulk path)."""
        self.ring.extend(lines)
        self.count += len(lines)

    def skip(self, n: int) -> None:
        """Count ``n`` lines that were not kept (they show up as omitted)."""
        if n > 0:
            self.ring.clear()  # what the ring held is no longer contiguous with what follows
            self.count += n

    def add_error(self, line: bytes) -> None:
        """Append an ``##[error]`` line."""
        ring = self.ring
        if self.frozen_end + 1 != self.count - len(ring):
            self.frozen.clear()  # lines were dropped in between: frozen must stay contiguous
        self.frozen.extend(ring)
        ring.clear()
        self.frozen.append(line)
        index = self.count
        self.frozen_end = index
        self.count += 1
        self.n_errors += 1
        if len(self._err_head) < ERRORS_HEAD:
            self._err_head.append((index, line))
        else:
            self._err_tail.append((index, line))

    def restart(self, head: bytes) -> None:
        """Start the section over at ``head`` (the fallback's latest ``##[group]Run``)."""
        self.head = head
        self.count = 0
        self.ring.clear()
        self.add(head)

    def rebase(self) -> None:
        """Make the ring's oldest line number 0 (a fallback section with no group line)."""
        self.count = len(self.ring)

    def errors(self) -> list[tuple[int, bytes]]:
        """The kept error lines with their numbers, in order."""
        return self._err_head + list(self._err_tail)

    def available(self, end: int) -> dict[int, bytes]:
        """Every kept line numbered below ``end``, by number."""
        lines: dict[int, bytes] = {}
        if self.head is not None:
            lines[0] = self.head
        lines.update(self.errors())
        lines.update(enumerate(self.frozen, self.frozen_end - len(self.frozen) + 1))
        lines.update(enumerate(self.ring, self.count - len(self.ring)))
        return {i: line for i, line in lines.items() if 0 <= i < end}


def render(
    section: Section, end: int, max_lines: int, max_bytes: int
) -> tuple[str, list[str], bool]:
    """The excerpt text of lines ``0 .. end-1``, the error messages, and whether it was cut."""
    errors = [(i, line) for i, line in section.errors() if i < end]
    messages = [error_message(line) for _, line in errors]
    if end <= 0:
        return "", messages, False
    avail = section.available(end)
    shown: dict[int, str] = {}

    def text_of(i: int) -> str:
        if i not in shown:
            shown[i] = render_line(avail[i])
        return shown[i]

    cut_lines = any(line.endswith(CUT_SUFFIX) for line in avail.values())
    if end <= max_lines and len(avail) == end:
        text = "\n".join(text_of(i) for i in range(end))
        if len(text.encode()) <= max_bytes:
            return text, messages, cut_lines
    kept = _select(section, end, avail, errors, text_of, shown, max_lines, max_bytes)
    return _clamp(_assemble(kept, end, text_of), max_lines, max_bytes), messages, True


def _cost(kept: list[int], end: int, size: dict[int, int]) -> tuple[int, int]:
    """Lines and UTF-8 bytes of the text made of ``kept`` lines and the omitted markers."""
    lines = nbytes = 0
    prev = -1
    for i in kept:
        if i - prev > 1:
            lines += 1
            nbytes += len(omitted_line(i - prev - 1)) + 1
        lines += 1
        nbytes += size[i] + 1
        prev = i
    if end - 1 > prev:
        lines += 1
        nbytes += len(omitted_line(end - 1 - prev)) + 1
    return lines, nbytes - 1


def _select(
    section: Section,
    end: int,
    avail: dict[int, bytes],
    errors: list[tuple[int, bytes]],
    text_of: Callable[[int], str],
    shown: dict[int, str],
    max_lines: int,
    max_bytes: int,
) -> list[int]:
    """Which lines a cut excerpt keeps: every error, then line 0, then the lines before the
    last error (or the section's last lines when it has no error), as many as fit."""
    size: dict[int, int] = {}

    def measure(i: int) -> int:
        if i not in size:
            size[i] = len(text_of(i).encode())
        return size[i]

    def cost(candidate: list[int]) -> tuple[int, int]:
        for i in candidate:
            measure(i)
        return _cost(sorted(candidate), end, size)

    def fits(candidate: list[int]) -> bool:
        lines, nbytes = cost(candidate)
        return lines <= max_lines and nbytes <= max_bytes

    kept = [i for i, _ in errors]
    # Every error must show: over the byte budget, shorten the longest error line (each step
    # strictly shorter, so this ends); over the line budget, or with nothing left to shorten,
    # drop a middle error (the last and the first are kept longest).
    while kept:
        lines, nbytes = cost(kept)
        if lines <= max_lines and nbytes <= max_bytes:
            break
        longest = max(kept, key=lambda i: len(shown[i]))
        if nbytes > max_bytes and len(shown[longest]) > MIN_ERROR_CHARS + len(_SHORTENED):
            cut = max(MIN_ERROR_CHARS, len(shown[longest]) // 2)
            shown[longest] = shown[longest][:cut] + _SHORTENED
            size.pop(longest, None)
        elif len(kept) > 1:
            del kept[(len(kept) - 1) // 2]
        else:
            break
    if 0 in avail and 0 not in kept and section.head is not None and fits([*kept, 0]):
        kept.append(0)
    fixed = sorted(kept)
    lines, nbytes = _cost(fixed, end, size)
    if lines > max_lines or nbytes > max_bytes:
        return fixed
    # Grow one block of context down from the anchor, costing each line in O(1): the line
    # itself, and the omitted-marker of the gap below it shrinking by one (or vanishing).
    low = fixed[-1] if errors and fixed else end  # lowest line of the block so far
    j = bisect.bisect_left(fixed, low) - 1  # fixed[j] is the kept line below the block
    added: list[int] = []
    i = low - 1
    while i >= 0 and i in avail:
        if j >= 0 and fixed[j] == i:
            low, j, i = i, j - 1, i - 1
            continue
        gap = low - (fixed[j] if j >= 0 else -1) - 1
        d_lines = 1 if gap > 1 else 0
        d_bytes = measure(i) + 1 - len(omitted_line(gap)) - 1
        if gap > 1:
            d_bytes += len(omitted_line(gap - 1)) + 1
        if lines + d_lines > max_lines or nbytes + d_bytes > max_bytes:
            break
        lines, nbytes = lines + d_lines, nbytes + d_bytes
        added.append(i)
        low, i = i, i - 1
    return sorted(fixed + added)


def _assemble(kept: list[int], end: int, text_of: Callable[[int], str]) -> list[str]:
    """The excerpt's lines: the kept ones, with a marker for each run of omitted lines."""
    out: list[str] = []
    prev = -1
    for i in kept:
        if i - prev > 1:
            out.append(omitted_line(i - prev - 1))
        out.append(text_of(i))
        prev = i
    if end - 1 > prev:
        out.append(omitted_line(end - 1 - prev))
    return out


def _clamp(lines: list[str], max_lines: int, max_bytes: int) -> str:
    """Enforce the limits even when the budget cannot hold one error line and its markers."""
    lines = lines[-max_lines:]  # the end holds the last error: it goes last
    while len(lines) > 1 and len("\n".join(lines).encode()) > max_bytes:
        del lines[0]
    data = "\n".join(lines).encode()[:max_bytes]
    return data.decode("utf-8", "ignore")
