"""A verdict's report and log excerpt as HTML for the operator page, safely.

The report is Markdown in which every remote text is already quoted as code (see
docs/untrusted-text.md); it is rendered here with raw HTML off, images off and only http(s)
links, so nothing in a job's log can become an element, a script or a `javascript:` link. The
excerpt is escaped line by line, its `##[error]` lines marked."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup, escape

from ghapp.core.untrusted import clean

ERROR_PREFIX = "##[error]"
WARNING_PREFIX = "##[warning]"


class _SafeMarkdown(MarkdownIt):
    """CommonMark without raw HTML; a link survives only if it is http(s)."""

    def validateLink(self, url: str) -> bool:
        """Only http(s) targets: no `javascript:`, `data:`, `file:` or relative tricks."""
        return url.strip().lower().startswith(("https://", "http://"))


def _link_open(
    renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    # Links leave the page without telling the target where from, in a new tab.
    tokens[idx].attrSet("rel", "noreferrer noopener")
    tokens[idx].attrSet("target", "_blank")
    rendered: str = renderer.renderToken(tokens, idx, options, env)
    return rendered


@functools.cache
def _markdown() -> MarkdownIt:
    md = _SafeMarkdown("commonmark", {"html": False, "linkify": False, "typographer": False})
    # An image would make the browser fetch a URL from the report (the CSP blocks it anyway).
    md.disable("image")
    md.add_render_rule("link_open", _link_open)
    return md


def report_html(markdown: str | None) -> Markup:
    """The report's Markdown as HTML: no raw HTML, no images, http(s) links only."""
    if not markdown:
        return Markup("")
    # markdown-it escapes every text it emits, and raw HTML is off: its output is markup.
    return Markup(_markdown().render(clean(markdown)))


def inline_html(markdown: str | None) -> Markup:
    """One line of Markdown (a verdict's summary, its names in code spans) as inline HTML."""
    if not markdown:
        return Markup("")
    return Markup(_markdown().renderInline(clean(markdown)))


def excerpt_html(excerpt: str | None) -> Markup:
    """A log excerpt, escaped, each `##[error]` line in a `<mark class="error-line">`."""
    lines = []
    for line in clean(excerpt or "").split("\n"):
        text = line.lstrip()
        if text.startswith(ERROR_PREFIX):
            lines.append(Markup('<mark class="error-line">{}</mark>').format(line))
        elif text.startswith(WARNING_PREFIX):
            lines.append(Markup('<mark class="warning-line">{}</mark>').format(line))
        else:
            lines.append(escape(line))
    return Markup("\n").join(lines)
