"""The one sanitiser of remote text (`ghapp.core.untrusted`): what it removes, what it keeps,
and the Markdown quoting built on it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ghapp.core.logs.section import render_line
from ghapp.core.untrusted import clean, code_block, code_span, one_line

# What must never survive: every control but tab and newline (ESC, BEL, BS, CR, ...), DEL, C1.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Pieces an attacker combines: every introducer, terminators, parameters, plain text.
FRAGMENTS = [
    "\x1b", "\x1b[", "\x9b", "\x1b]", "\x9d", "\x1bP", "\x90", "\x1bX", "\x98", "\x1b^", "\x9e",
    "\x1b_", "\x9f", "\x07", "\x1b\\", "\x9c", "\x08", "\r", "\n", "\t", "\x7f", "\x00", "\x18",
    "#8", "c", "(B", "=", "52;c;", "8;;", "31", ";", "m", "H", "2J", "?1049h", " ", "[", "]",
    "a", "é", "🙂", "`", "##", "<img src=x>",
]
attacks = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
anything = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
# Text a person writes: any letter, mark, symbol or emoji, tabs and newlines; no control.
letters = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
printable = st.text(alphabet=letters | st.sampled_from("\t\n"), max_size=200)


@settings(max_examples=400, deadline=None)
@given(st.one_of(attacks, anything))
def test_nothing_a_terminal_obeys_survives_and_cleaning_is_stable(text: str) -> None:
    cleaned = clean(text)
    assert FORBIDDEN.search(cleaned) is None, repr(cleaned)
    for character in "\x1b\x07\x08\x7f\x9b\x9d\x9c":
        assert character not in cleaned
    assert clean(cleaned) == cleaned


@settings(max_examples=400, deadline=None)
@given(printable)
def test_plain_text_is_left_alone(text: str) -> None:
    assert clean(text) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("copy \x1b]52;c;cm0gLXJmIH4=\x07me", "copy me"),  # OSC 52: the clipboard
        ("see \x1b]8;;https://evil.example\x1b\\here\x1b]8;;\x1b\\ now", "see here now"),  # OSC 8
        ("\x1b#8screen", "screen"),  # DECALN: fill the screen with E
        ("\x1bcreset", "reset"),  # RIS: reset the terminal
        ("\x9b2Jcleared", "cleared"),  # the one-character CSI
        ("\x9d0;title\x9cafter", "after"),  # 8-bit OSC ended by 8-bit ST
        ("pass\x08\x08\x08\x08fail", "passfail"),  # backspaces never overwrite
        ("a\x1b\x1b]0;title\x07b", "ab"),  # ESC ESC ] does not re-form a sequence
        ("a\x1b\x07]0;title\x07b", "a]0;titleb"),  # nor does a control in between
        ("\x1bP1$qm\x1b\\dcs", "dcs"),  # DCS
        ("\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\ok", "ok"),  # APC, PM, SOS
        ("\x1b(Bcharset\x1b=\x1b>", "charset"),  # nF and Fp escapes
        ("\x1b[38;5;196mred\x1b[0m", "red"),  # colours
        ("\x1b[?1049hscreen", "screen"),  # private CSI
        ("cut \x1b[31", "cut "),  # a CSI cut short
        ("title \x1b]0;never ends\nnext line", "title \nnext line"),  # unterminated: its line
        ("10%\r50%\r100%\r\n", "100%\n"),  # redrawn progress: what stays visible
        ("a\u200bb\u00a0c\ttab", "a\u200bb\u00a0c\ttab"),  # not controls: kept
    ],
)
def test_each_kind_of_sequence_is_removed(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_a_log_line_is_cleaned_as_the_excerpt_shows_it() -> None:
    raw = b"2026-11-26T10:00:00.0000000Z \x1b]52;c;ZXZpbA==\x07\xc2\x9b31mboom\x1b#8\r"
    assert render_line(raw) == "boom"


def test_one_line_flattens_after_cleaning() -> None:
    assert one_line("a\n\x1b[31m b\tc\r\n", 300) == "a b c"
    assert one_line("x" * 500, 10) == "xxxxxxx..."


def _inline(text: str) -> list[tuple[str, str]]:
    tokens = MarkdownIt("commonmark").parseInline(text)[0].children or []
    return [(token.type, token.content) for token in tokens]


@pytest.mark.parametrize(
    "text",
    ["plain", "`", "``", "a`b", "a``b```c", "`start", "end`", " space ", "<img src=x>", "[a](b)",
     "**bold**", "\\`", ""],
)
def test_a_code_span_holds_its_text_whole(text: str) -> None:
    span = code_span(text)
    assert _inline(f"before {span} after") == [
        ("text", "before "), ("code_inline", one_line(text) or "  "), ("text", " after"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.one_of(attacks, anything, st.text(alphabet="` \nab<>[]()!#", max_size=60)))
def test_a_code_span_is_never_closed_early(text: str) -> None:
    tokens = _inline(f"x {code_span(text)} y")
    assert [kind for kind, _ in tokens] == ["text", "code_inline", "text"]
    assert tokens[1][1] == (one_line(text) or "  ")


@settings(max_examples=300, deadline=None)
@given(st.one_of(attacks, anything, st.text(alphabet="`~ \nab<>#", max_size=80)))
def test_a_code_block_is_never_closed_early(text: str) -> None:
    document = "\n".join(["intro", "", *code_block(text), "", "outro"])
    tokens = MarkdownIt("commonmark").parse(document)
    fences = [token for token in tokens if token.type == "fence"]
    assert len(fences) == 1
    assert fences[0].content == clean(text) + "\n"
    assert tokens[-2].content == "outro"  # the paragraph after the block is ghapp's again
