"""How the operator pages render: the Jinja2 templates (package data in `templates/`), their
filters, and the security headers every page carries (a per-response CSP nonce)."""

from __future__ import annotations

import functools
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ghapp.core.times import github_time

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates


@functools.cache
def _templates() -> Jinja2Templates:
    # Built on the first page view: Jinja2 is memory a server without an operator never needs.
    import jinja2
    from starlette.templating import Jinja2Templates as Templates

    templates = Templates(
        env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )
    templates.env.filters["safe_url"] = safe_url
    templates.env.filters["when"] = _when
    templates.env.filters["svg"] = _svg
    templates.env.filters["seconds"] = _seconds
    templates.env.filters["short_sha"] = short_sha
    templates.env.filters["release_label"] = release_label
    # Imported here with markdown-it, which only the deployment page needs.
    from ghapp.web.operator.report_html import excerpt_html, inline_html, report_html

    templates.env.filters["report_html"] = report_html
    templates.env.filters["excerpt"] = excerpt_html
    templates.env.filters["inline_md"] = inline_html
    return templates


def security_headers(nonce: str, *, script: bool = False) -> dict[str, str]:
    """The headers of every operator page: CSP with the nonce, no framing, no cache."""
    # The one inline stylesheet is allowed by its nonce; so is the deployments page's one
    # script (it follows running deployments' event streams, hence `connect-src 'self'`).
    scripts = f"script-src 'nonce-{nonce}'; connect-src 'self'; " if script else ""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; {scripts}form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    script: bool = False,
) -> Response:
    """A template rendered with a fresh CSP nonce and the security headers."""
    nonce = secrets.token_urlsafe(16)
    return _templates().TemplateResponse(
        request,
        name,
        {"nonce": nonce, **context},
        status_code=status,
        headers=security_headers(nonce, script=script),
    )


def safe_url(url: object) -> str | None:
    """A link target only if it is http(s): autoescaping does not stop `javascript:` URLs."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def short_sha(value: object) -> str:
    """A commit sha as GitHub shows it: its first 7 characters (other text unchanged)."""
    text = str(value or "")
    return text[:7] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def release_label(release: Any) -> str:
    """What names a release: `inputs.version` when given, else its commit's short sha."""
    version = getattr(release, "version", None)
    if not version or version == getattr(release, "head_sha", None):
        return short_sha(version or getattr(release, "head_sha", None) or "") or "previous"
    # A button is no place for a long name: the whole one is in its title.
    text = str(version)
    return text if len(text) <= 24 else text[:23] + "…"


def _svg(markup: str) -> Any:
    """A chart from `ghapp.web.operator.charts`, which escapes every text it draws."""
    from markupsafe import Markup

    # Built by ghapp.web.operator.charts, which escapes every text it draws.
    return Markup(markup)


def _seconds(value: object) -> str:
    """A duration in seconds, as `4m 05s` (or `—` for none)."""
    if not isinstance(value, (int, float)):
        return "—"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _when(value: object) -> str:
    """A time as `YYYY-MM-DD HH:MM:SS` in UTC (datetimes, ISO strings, epoch seconds)."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        moment = github_time(value)
        if moment is None:
            return value
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
