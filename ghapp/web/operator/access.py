"""Who may use the operator pages: the bearer token or a signed-in session, sign-in (throttled)
and sign-out, and the CSRF-checked form of a page action."""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ghapp.web.authz import audit
from ghapp.web.limits import FORM_CAP, BodyRefused, read_body
from ghapp.web.operator.render import render, security_headers
from ghapp.web.operator.sessions import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SignInThrottle,
    make_session_cookie,
    read_session_cookie,
    revoke_session,
    session_revoked,
)

if TYPE_CHECKING:
    from ghapp.config import Settings
    from ghapp.web.operator.github_signin import Person
    from ghapp.web.services import Services

log = logging.getLogger("ghapp.operator")


async def checked(request: Request, session: Session) -> Person | None:
    """The signed-in person, rechecked with GitHub when due (PAGE_AUTH=github)."""
    # Sign-in with GitHub's code (and aiohttp) loads at its first use: idle memory.
    from ghapp.web.operator import github_signin

    return await github_signin.checked(request, session)


async def forget(request: Request, session: Session) -> None:
    """Drop what the server keeps for a session (a person's GitHub token)."""
    from ghapp.web.operator import github_signin

    await github_signin.forget(request, session)


def services_of(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


def _token_ok(settings: Settings, token: str) -> bool:
    expected = settings.orchestrator_token or ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def bearer_ok(request: Request, settings: Settings) -> bool:
    """Whether the request carries the orchestrator's token as a bearer header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _token_ok(settings, token.strip())


def _secure(request: Request) -> bool:
    # Behind a TLS-terminating proxy the scheme arrives in X-Forwarded-Proto.
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body, read as a stream; TooLarge past 16 KiB (a few short fields)."""
    raw = await read_body(request, FORM_CAP)
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def signed_in(request: Request) -> Session | None:
    """The request's signed-in session, unless it expired or was signed out."""
    services = services_of(request)
    session = read_session_cookie(services.settings, request.cookies.get(SESSION_COOKIE))
    if session is None or await session_revoked(services.store, session):
        return None
    if session.actor.startswith("github:"):
        # A person signed in with GitHub: their teams are rechecked when due.
        if services.settings.page_auth != "github" or await checked(request, session) is None:
            return None
    elif services.settings.page_auth == "github":
        # PAGE_AUTH=github: token sessions from before the switch no longer count.
        return None
    return session


def refused(exc: BodyRefused) -> Response:
    """The plain-text answer to a form body refused for its size or shape."""
    return Response(
        f"{exc}\n",
        exc.status,
        media_type="text/plain",
        headers=security_headers(secrets.token_urlsafe(16)),
    )


def back(target: str | None, notice: str | None = None) -> str:
    """Where to go after an action: a path on this site only (no open redirect)."""
    path = "/"
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        path = target
    parts = urlsplit(path)
    query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs if k != "notice"]
    if notice:
        query.append(("notice", notice))
    return parts.path + ("?" + urlencode(query) if query else "")


def login_page(
    request: Request, *, failed: bool = False, status: int | None = None, after: str = "/"
) -> Response:
    """The sign-in form (401 after a failed attempt); `after`: where signing in leads."""
    github = services_of(request).settings.page_auth == "github"
    context = {"failed": failed, "after": back(after), "github": github}
    return render(request, "login.html", context, status or (401 if failed else 200))


def _throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle | None = getattr(request.app.state, "sign_in_throttle", None)
    if throttle is None:
        throttle = request.app.state.sign_in_throttle = SignInThrottle()
    return throttle


async def login(request: Request) -> Response:
    """POST /login: check the token; set the session cookie and go to `/`.

    At most 10 failed attempts per client address a minute: the next gets 429, right or wrong.
    """
    if services_of(request).settings.page_auth == "github":
        # People sign in with GitHub (GET /auth/github); a token session would not count.
        return login_page(request, status=404)
    address = request.client.host if request.client else "unknown"
    throttle = _throttle(request)
    wait = throttle.retry_after(address)
    if wait is not None:
        log.warning("operator sign-in throttled", extra={"client": address})
        response = Response(
            "too many failed sign-ins from this address: try again later\n",
            429,
            media_type="text/plain",
            headers={**security_headers(secrets.token_urlsafe(16)), "Retry-After": str(wait)},
        )
        return response
    try:
        form = await read_form(request)
    except BodyRefused as exc:
        throttle.failed(address)
        return refused(exc)
    # Back to the page that asked for the sign-in: a path on this site only.
    after = back(form.get("next"))
    token = form.get("token", "").strip()
    # The page shows every repository: only an admin token (ORCHESTRATOR_TOKEN's or one
    # with the `admin` scope) signs in.
    grant = await services_of(request).tokens.grant(token) if token else None
    if grant is None or not grant.admin:
        throttle.failed(address)
        log.warning("operator login refused", extra={"client": address})
        who = f"token:{grant.name}" if grant is not None else "anonymous"
        await audit(request, "signin.failed", target="operator page", outcome=401, who=who)
        return login_page(request, failed=True, after=after)
    await audit(request, "signin", target="operator page", outcome=303, grant=grant)
    value, _ = make_session_cookie(services_of(request).settings, actor=f"token:{grant.name}")
    response = RedirectResponse(after, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    log.info("operator logged in")
    return response


async def logout(request: Request) -> Response:
    """POST /logout (with the CSRF token): end the session on the server, forget the cookie."""
    session = await signed_in(request)
    if session is None:
        return login_page(request, status=401)
    try:
        form = await read_form(request)
    except BodyRefused as exc:
        return refused(exc)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        return RedirectResponse(back("/", "csrf"), status_code=303)
    await revoke_session(services_of(request).store, session)
    await forget(request, session)
    log.info("operator signed out")
    await audit(request, "signout", target="operator page", outcome=303,
                who=session.actor or "page session")
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


async def authorized_action(request: Request) -> Response | dict[str, str]:
    """The form of a page action that may run, or the answer refusing it.

    Authorisation first (a bearer token, or a session), the body only then; with a session,
    the form must carry its CSRF token.
    """
    settings = services_of(request).settings
    bearer = bearer_ok(request, settings)
    session = None if bearer else await signed_in(request)
    if not bearer and session is None:
        return login_page(request, status=401)
    try:
        form = await read_form(request)
    except BodyRefused as exc:
        return refused(exc)
    # A browser never attaches the bearer header by itself, so a cross-site form cannot forge it.
    if session is not None and not hmac.compare_digest(
        form.get("csrf", "").encode(), session.csrf.encode()
    ):
        return RedirectResponse(back("/", "csrf"), status_code=303)
    if session is not None and session.actor.startswith("github:"):
        person = await checked(request, session)
        if person is None or person.role != "admin":
            log.warning("operator page action refused: not an admin team member",
                        extra={"path": request.url.path})
            teams = ", ".join(services_of(request).settings.page_admin_teams) or "(none)"
            return render(request, "signin_refused.html",
                          {"reason": f"Only members of {teams} may do this."}, 403)
    # Who acts, for the audit trail: the signed-in token, or the bearer (the admin token).
    request.state.page_actor = (
        (session.actor or "page session") if session is not None else "token:orchestrator"
    )
    return form


def page_actor(request: Request) -> str:
    """Who is acting through a page form (set by `authorized_action`)."""
    return str(getattr(request.state, "page_actor", "page session"))
