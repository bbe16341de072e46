"""The timestamp search for the failing step's section: the window's states, the shared
first and last seconds (see :mod:`ghapp.core.logs.excerpt` for the rules)."""

from __future__ import annotations

from collections import deque

from ghapp.core.logs.marks import RUNNER, classify
from ghapp.core.logs.section import Section, Window

_MAX_PROV_MARKS = 64

# States of the timestamp search.
BEFORE, PROV, IN, DONE, OFF = range(5)


class StepSearch:
    """The search part of :class:`~ghapp.core.logs.excerpt.ExcerptBuilder`, which sets its state."""

    _max_lines: int
    _win: Window | None
    _state: int
    _sec: Section | None
    _ambiguous: bool
    _fb: Section | None
    _prov: deque[bytes]
    _prov_n: int
    _prov_marks: list[tuple[int, bytes]]
    _prov_mark_count: int
    _prov_expect: int
    _marks_before: int
    _held: deque[bytes]
    _held_n: int

    def _before(self, line: bytes, ts: bytes | None, is_err: bool, mark: int) -> None:
        win = self._win
        assert win is not None
        if ts is None or ts < win.lo:
            return
        if ts >= win.hi:
            self._state = OFF  # the window holds no line: the fallback decides
        elif win.b_hi is not None and ts < win.b_hi:
            self._state = PROV
            # Steps that started in the second before may print their marker in this one
            # (a step's first line can come a little after its start): those not seen yet.
            self._prov_expect = win.k_start + max(0, win.k_prev - self._marks_before)
            self._provisional(line, ts, is_err, mark)
        else:
            self._open(line, is_err)

    def _open(self, line: bytes | None, is_err: bool, ambiguous: bool = False) -> None:
        """Start F's section at ``line``."""
        self._sec = Section(self._max_lines, head=line)
        self._state = IN
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
            ts, is_err, mark = classify(line, last_ts)
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
            elif mark and (sec.n_errors or mark == RUNNER):
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
        self._state = DONE
