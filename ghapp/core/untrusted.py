"""Text written by strangers (job logs, step and job names, annotations, GitHub's messages), made
safe to print on a terminal and to quote in Markdown.

`clean` is the one sanitiser: it removes every control character but tab and newline and every
terminal escape sequence, repeatedly until nothing changes, in time linear in the text. A carriage
return inside a line redraws it on a terminal (progress bars), so only what stays visible is kept:
the text after the line's last CR. `code_span` and `code_block` quote cleaned text for a Markdown
document so that no part of it can become the document's own structure (see docs/untrusted-text.md).
"""

from __future__ import annotations

import re

# Any character `clean` must act on: C0 controls but tab and newline, DEL, C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A run of control characters (CR left for the redraw rule), with the rest of the escape
# sequence its last one introduces. Leading with one character class lets `re` skip plain text
# at C speed; the lookbehinds then say which introducer it was. No repetition can run past a
# character that starts another attempt (ESC, C1) and none backtracks (possessive), so a pass
# is linear in the text.
_SEQUENCE = re.compile(
    # Written twice, not `++`: a pattern that opens with a plain class is the one `re` scans for
    # with its fast prefix search.
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f][\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*+"
    r"(?:"
    # CSI, 7-bit or 8-bit: parameters, intermediates, final byte (cut short: what there is).
    r"(?<=\x1b)\[[0-?]*+[ -/]*+[@-~]?"
    r"|(?<=\x9b)[0-?]*+[ -/]*+[@-~]?"
    # OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \ or U+009C); unterminated, up to
    # the end of the line (a terminal would swallow more, but what follows is plain text here).
    r"|(?<=\x1b)[\]PX^_][^\x07\x1b\x9c\n]*+(?:\x07|\x1b\\|\x9c)?"
    r"|(?<=[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*+(?:\x07|\x1b\\|\x9c)?"
    # Every other escape: intermediates then a final byte (ESC c, ESC #8, ESC (B, ESC =, ...).
    r"|(?<=\x1b)[ -/]*+[0-~]"
    r")?"
)
_BACKTICKS = re.compile(r"`+")


def clean(text: str) -> str:
    """`text` with no control character but tab and newline, and no escape sequence."""
    # Each pass removes every control character it finds, so the second finds none; the loop
    # is the guarantee that nothing a pass leaves can form a sequence again.
    while _CONTROL.search(text) is not None:
        text = _visible_lines(_SEQUENCE.sub("", text))
    return text


def _visible_lines(text: str) -> str:
    """Each line as a terminal leaves it after its carriage returns: the last redraw."""
    if "\r" not in text:
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if "\r" in line:
            line = line.rstrip("\r")
            lines[index] = line[line.rfind("\r") + 1 :]
    return "\n".join(lines)


def one_line(text: str, limit: int = 300) -> str:
    """Cleaned text on one line (whitespace runs made one space), at most `limit` characters."""
    flat = " ".join(clean(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def longest_backtick_run(text: str) -> int:
    """The length of the longest run of backticks in `text` (0 without any)."""
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def code_span(text: str, limit: int = 300) -> str:
    """Remote text as one inline Markdown code span: cleaned, on one line, never closed early."""
    flat = one_line(text, limit)
    fence = "`" * (longest_backtick_run(flat) + 1)
    # CommonMark strips one space from each end of a span that starts and ends with one, and
    # needs a space between the fence and content that starts or ends with a backtick.
    if not flat or flat[0] in "` " or flat[-1] in "` ":
        flat = f" {flat} "
    return f"{fence}{flat}{fence}"


def code_block(text: str) -> list[str]:
    """Remote text as the lines of a fenced Markdown block whose fence no line can close."""
    body = clean(text)
    fence = "`" * max(3, longest_backtick_run(body) + 1)
    return [fence, body, fence]
