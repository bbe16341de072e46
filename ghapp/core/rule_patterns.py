"""The regular expressions of cause rules, run by RE2: time linear in the text, whatever the text.

Job logs are written by whoever can push a workflow, so a pattern must not be made to backtrack:
RE2 (google-re2) runs every pattern as an automaton, in one pass over the text, and refuses at
compile time what it cannot run that way (backreferences, lookarounds). Patterns are searched
case-insensitively, with `^` and `$` at line ends (see docs/cause-rules.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# Prefixed to every pattern: `^` and `$` match at each line's start and end, as they always have.
FLAGS = "(?m)"
MAX_MEM = 1024 * 1024
_HINTS = (
    (re.compile(r"invalid escape sequence: \\[1-9]|invalid perl operator: \(\?P="),
     "backreferences are not supported"),
    (re.compile(r"invalid perl operator: \(\?<?[=!]"), "lookarounds are not supported"),
    (re.compile(r"bad repetition operator: [*+?}]\+|invalid perl operator: \(\?>"),
     "possessive repeats and atomic groups are not supported"),
    (re.compile(r"invalid escape sequence: \\Z"), r"write \z for the end of the text"),
    (re.compile(r"pattern too large"), "its automaton would need over 1 MiB; make it smaller"),
)


class PatternError(ValueError):
    """A pattern RE2 refuses; the message says why, on one line."""


def _re2() -> Any:
    # Loaded with the first pattern (2.6 MiB): a server that never sees a failure never loads it.
    import re2

    return re2


def _options() -> Any:
    options = _re2().Options()
    options.case_sensitive = False
    # Only where a match starts is read, never a group: RE2 then answers with its DFA alone.
    options.never_capture = True
    # A refused pattern is reported once, by ghapp, in one line (not also on stderr by RE2).
    options.log_errors = False
    # Each automaton's memory, its cache of states included, is bounded (RE2's default is 8 MiB
    # a pattern); past it RE2 empties the cache or steps down to its NFA: slower, still linear.
    options.max_mem = MAX_MEM
    return options


class Pattern:
    """One compiled pattern; searches bytes (UTF-8) or text."""

    __slots__ = ("_regex", "source")

    def __init__(self, source: str) -> None:
        re2 = _re2()
        try:
            self._regex = re2.compile(FLAGS + source, _options())
        except re2.error as exc:
            raise PatternError(_why_refused(source, exc)) from None
        self.source = source

    def find(self, data: bytes) -> int | None:
        """Where the first match in `data` starts (a byte offset), or None."""
        hit = self._regex.search(data)
        return None if hit is None else int(hit.start())

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in `text`."""
        return self._regex.search(encode(text)) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def encode(text: str) -> bytes:
    """Text as RE2 reads it: UTF-8, lone surrogates kept (so a line decodes back the same)."""
    return text.encode("utf-8", "surrogatepass")


def _why_refused(source: str, exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    why = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    why = why.replace(FLAGS + source, source).replace("\r", "\\r").replace("\n", "\\n")
    try:
        re.compile(source, re.IGNORECASE | re.MULTILINE)
    except (re.error, RecursionError, OverflowError):
        return f"is not a valid regular expression ({why})"
    hint = next((text for pattern, text in _HINTS if pattern.search(why)), None)
    return (
        "is not a pattern the linear-time engine (RE2) can run: "
        f"{why}{f'; {hint}' if hint else ''} (see docs/cause-rules.md)"
    )


class Prefilter:
    """Which of several patterns may match a text, decided in one pass (RE2's FilteredRE2).

    Each pattern needs some literal strings in any text it matches; one scan for all of them
    rules most patterns out before any is searched. A pattern without such strings is always
    a candidate, so the prefilter never hides a match.
    """

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self._count = len(patterns)
        self._filter: Any = None
        if not patterns:
            return
        re2 = _re2()
        candidate = re2.Filter()
        for pattern in patterns:
            candidate.Add(FLAGS + pattern.source, _options())
        try:
            candidate.Compile()
        except re2.error:
            return  # too many literals for its memory budget: every pattern is searched
        self._filter = candidate

    def candidates(self, data: bytes) -> frozenset[int] | None:
        """Indexes of the patterns that may match `data`; None: any of them may."""
        if self._filter is None:
            return None if self._count else frozenset()
        return frozenset(self._filter.Match(data, True) or ())
