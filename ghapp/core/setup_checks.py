"""The set-up checks of `ghapp check` and `GET /api/v1/check/{owner}/{repo}`: what each answer
GitHub (or the orchestrator) gave means, and what to do about it. Pure: the answers are
arguments; asking for them is `ghapp.work.setup_checks`'s job.

Text that comes from GitHub (its error messages, names) goes through `one_line` before it is
put in a detail: the detail is printed on terminals and served as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from ghapp.core.correlation import CORRELATION_INPUT
from ghapp.core.untrusted import one_line

CheckId = Literal[
    "app_key", "installation", "permissions", "workflow", "deploy_key", "webhooks", "callback"
]
CHECK_IDS: tuple[CheckId, ...] = (
    "app_key",
    "installation",
    "permissions",
    "workflow",
    "deploy_key",
    "webhooks",
    "callback",
)
SECRET_NAME = "DEPLOY_SSH_KEY"
LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}


class SetupCheck(BaseModel):
    """One check: whether it passed, what was found, and what to do when it failed."""

    id: CheckId
    ok: bool
    detail: str = Field(description="what was found")
    fix: str | None = Field(description="what to do about it; null when the check passed")


class SetupReport(BaseModel):
    """What `ghapp check` prints with `--json`, and `GET /api/v1/check/{owner}/{repo}` answers."""

    ok: bool = Field(description="every check passed")
    checks: list[SetupCheck] = Field(description="one per check, always all seven, in order")


def report(checks: Iterable[SetupCheck]) -> SetupReport:
    """The report of the checks, in the contract's order."""
    by_id = {check.id: check for check in checks}
    ordered = [by_id[name] for name in CHECK_IDS if name in by_id]
    return SetupReport(ok=all(check.ok for check in ordered), checks=ordered)


@dataclass(frozen=True)
class Answer:
    """What a request got: an HTTP status and body, or no answer (`status` None, `error` why)."""

    status: int | None
    body: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def passed(check: CheckId, detail: str) -> SetupCheck:
    """A check that passed."""
    return SetupCheck(id=check, ok=True, detail=detail, fix=None)


def failed(check: CheckId, detail: str, fix: str) -> SetupCheck:
    """A check that failed, with what to do."""
    return SetupCheck(id=check, ok=False, detail=detail, fix=fix)


def not_checked(check: CheckId, because: str, fix: str) -> SetupCheck:
    """A check that could not run because an earlier one failed."""
    return failed(check, f"not checked: {because}", fix)


def _said(answer: Answer) -> str:
    """`403: Resource not accessible by integration`, or why there was no answer."""
    if answer.status is None:
        return one_line(answer.error or "no answer")
    message = answer.error or ""
    return f"{answer.status}: {one_line(message)}" if message else str(answer.status)


def unreachable(check: CheckId, api_url: str, answer: Answer) -> SetupCheck:
    """GitHub did not answer (or kept failing)."""
    return failed(
        check,
        f"GitHub could not be reached at {api_url} ({_said(answer)})",
        "check GITHUB_API_URL and that this machine reaches it, then run the check again",
    )


def judge_app_key(key_problem: str | None, answer: Answer | None, api_url: str) -> SetupCheck:
    """The key loads and GitHub accepts the App's JWT (`GET /app`)."""
    if key_problem is not None or answer is None:
        return failed(
            "app_key",
            one_line(key_problem or "the key was not tried"),
            "set APP_ID and PRIVATE_KEY_PATH (or PRIVATE_KEY) to the App's id and the .pem "
            "file generated on its settings page (Private keys); `ghapp setup` writes both",
        )
    if answer.status is None or answer.status >= 500:
        return unreachable("app_key", api_url, answer)
    if answer.status == 401:
        return failed(
            "app_key",
            f"GitHub refused the App's JWT ({_said(answer)})",
            "APP_ID and the private key must be the same App's (a key deleted on the App's "
            "settings page stops working: generate a new one), and this machine's clock must "
            "be right to within a minute",
        )
    if not answer.ok or not isinstance(answer.body, Mapping):
        return failed(
            "app_key",
            f"GET /app answered {_said(answer)}",
            "check GITHUB_API_URL (https://HOST/api/v3 for GitHub Enterprise Server)",
        )
    app = answer.body
    return passed(
        "app_key",
        f"GitHub accepts the JWT of the App {one_line(str(app.get('name') or '?'), 100)} "
        f"(id {one_line(str(app.get('id')), 30)})",
    )


def install_url(app: Mapping[str, Any] | None) -> str | None:
    """The page that installs the App (from `GET /app`'s `html_url`), when known."""
    page = app.get("html_url") if app else None
    return f"{one_line(str(page), 200)}/installations/new" if page else None


def judge_installation(
    answer: Answer, repository: str, app: Mapping[str, Any] | None, api_url: str
) -> SetupCheck:
    """The App is installed on the repository (`GET /repos/{o}/{r}/installation`)."""
    if answer.status is None or answer.status >= 500:
        return unreachable("installation", api_url, answer)
    if answer.status == 404:
        page = install_url(app)
        where = f": {page}" if page else " (Install App, on the App's page)"
        return failed(
            "installation",
            f"the App is not installed on {repository}, or the repository does not exist",
            f"install the App on {repository}{where}",
        )
    if not answer.ok or not isinstance(answer.body, Mapping):
        return failed(
            "installation",
            f"GitHub answered {_said(answer)} for {repository}'s installation",
            f"install the App on {repository}, then run the check again",
        )
    installation = answer.body
    account = one_line(str((installation.get("account") or {}).get("login") or "?"), 100)
    if installation.get("suspended_at"):
        return failed(
            "installation",
            f"the App's installation on {account} is suspended",
            f"unsuspend it: {one_line(str(installation.get('html_url') or ''), 200)}",
        )
    return passed(
        "installation",
        f"installed on {account} (installation {one_line(str(installation.get('id')), 30)})",
    )


def is_organization_permission(name: str) -> bool:
    """Whether a permission applies to organisations only (an installation on a user lacks it)."""
    return name == "members" or name.startswith("organization_")


def missing_permissions(
    wanted: Mapping[str, str], granted: Mapping[str, Any], *, organization: bool
) -> list[str]:
    """`name: wanted (has granted)` for each permission granted below what is wanted."""
    missing = []
    for name, level in wanted.items():
        if is_organization_permission(name) and not organization:
            continue
        has = str(granted.get(name) or "none")
        if LEVELS.get(has, 0) < LEVELS.get(str(level), 0):
            missing.append(f"{name}: {level} (has {has})")
    return missing


def judge_permissions(
    wanted: Mapping[str, str],
    installation: Mapping[str, Any],
    app: Mapping[str, Any] | None,
) -> SetupCheck:
    """The installation grants at least what the manifest asks."""
    organization = installation.get("target_type") == "Organization"
    granted = installation.get("permissions") or {}
    missing = missing_permissions(wanted, granted, organization=organization)
    if not missing:
        asked = ", ".join(f"{name}: {level}" for name, level in sorted(wanted.items()))
        return passed("permissions", f"the installation grants what the manifest asks ({asked})")
    page = one_line(str(installation.get("html_url") or ""), 200)
    fix = f"accept the new permissions on the installation ({page or 'Configure, on the App'})"
    if app is not None:
        app_missing = missing_permissions(
            wanted, app.get("permissions") or {}, organization=organization
        )
        if app_missing:
            fix = (
                f"the App itself does not ask for {', '.join(app_missing)}: set its permissions "
                "to manifest/app.yml's (App settings > Permissions & events), then " + fix
            )
    return failed("permissions", f"the installation lacks {', '.join(missing)}", fix)


def _triggers(document: Mapping[Any, Any]) -> Mapping[str, Any]:
    # YAML 1.1 reads the key `on` as True; `on` may be a name, a list of names or a mapping.
    triggers = document.get("on", document.get(True))
    if isinstance(triggers, str):
        return {triggers: None}
    if isinstance(triggers, list):
        return {str(name): None for name in triggers}
    if isinstance(triggers, Mapping):
        return {str(name): value for name, value in triggers.items()}
    return {}


def judge_workflow(
    text: str | None,
    answer: Answer,
    *,
    path: str,
    branch: str,
    environment: str | None,
    api_url: str,
) -> SetupCheck:
    """The workflow is on the default branch, runs on workflow_dispatch and declares the
    correlation input (and, with an environment, lets that environment through)."""
    import yaml  # only the workflow check reads YAML: nothing else pays for it

    template = f"ghapp template deploy > {path}"
    if answer.status is None or answer.status >= 500:
        return unreachable("workflow", api_url, answer)
    if answer.status == 404:
        return failed(
            "workflow",
            f"no {path} on the default branch",
            f"add it ({template}) and commit it on the default branch: GitHub dispatches "
            "only workflows that are there",
        )
    if not answer.ok or text is None:
        return failed(
            "workflow",
            f"GitHub answered {_said(answer)} for {path}",
            "the installation needs contents: read (see the permissions check)",
        )
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return failed(
            "workflow",
            f"{path} on {branch} is not valid YAML ({one_line(str(exc), 200)})",
            "fix the file (actionlint points at such errors)",
        )
    triggers = _triggers(document) if isinstance(document, Mapping) else {}
    if "workflow_dispatch" not in triggers:
        ons = ", ".join(one_line(name, 40) for name in triggers) or "nothing"
        return failed(
            "workflow",
            f"{path} on {branch} does not run on workflow_dispatch (on: {ons})",
            f"add `workflow_dispatch:` to its `on:`, with its inputs, as {template} has",
        )
    dispatch = triggers["workflow_dispatch"]
    inputs = dispatch.get("inputs") if isinstance(dispatch, Mapping) else None
    inputs = inputs if isinstance(inputs, Mapping) else {}
    if CORRELATION_INPUT not in inputs:
        return failed(
            "workflow",
            f"{path} on {branch} declares no `{CORRELATION_INPUT}` input",
            f"declare the optional input `{CORRELATION_INPUT}` and put "
            f"`${{{{ inputs.{CORRELATION_INPUT} }}}}` in its run-name, as {template} does: "
            "it is how ghapp finds the run where GitHub does not say which run a dispatch "
            "started (GitHub Enterprise Server)",
        )
    allowed = _choices(inputs.get("environment"))
    if environment is not None and allowed is not None and environment not in allowed:
        return failed(
            "workflow",
            f"{path}'s input `environment` allows only "
            f"{', '.join(one_line(str(option), 40) for option in allowed)}",
            f"add {environment} to the input's options, or deploy to one of them",
        )
    return passed(
        "workflow",
        f"{path} on {branch} runs on workflow_dispatch and declares `{CORRELATION_INPUT}`",
    )


def _choices(spec: object) -> list[Any] | None:
    """The options of a `type: choice` input, or None when it takes any value."""
    if isinstance(spec, Mapping) and spec.get("type") == "choice":
        options = spec.get("options")
        return list(options) if isinstance(options, list) else []
    return None


def judge_deploy_key(
    repository: str,
    in_repository: Answer,
    in_environment: Answer | None,
    environment: str | None,
    api_url: str,
) -> SetupCheck:
    """The Actions secret DEPLOY_SSH_KEY exists (in the repository, or the environment's)."""
    make = f"ghapp deploy-key {repository} (it stores a new key and prints its public half)"
    if in_repository.ok:
        return passed("deploy_key", f"{SECRET_NAME} is an Actions secret of {repository}")
    if in_environment is not None and in_environment.ok:
        return passed(
            "deploy_key", f"{SECRET_NAME} is a secret of {repository}'s environment {environment}"
        )
    for answer in (in_repository, in_environment):
        if answer is not None and (answer.status is None or answer.status >= 500):
            return unreachable("deploy_key", api_url, answer)
    if in_repository.status == 404 and (in_environment is None or in_environment.status == 404):
        where = f" nor of its environment {environment}" if environment else ""
        detail = f"{repository} has no Actions secret {SECRET_NAME}{where}"
        return failed("deploy_key", detail, make)
    return failed(
        "deploy_key",
        f"GitHub answered {_said(in_repository)} for the secret {SECRET_NAME}",
        "the installation needs secrets permission (see the permissions check), then " + make,
    )


def _status_code(item: Mapping[str, Any]) -> int:
    code = item.get("status_code")
    return code if isinstance(code, int) else 0


def _delivery_fix(code: int) -> str:
    """What a delivery's answer says about the set-up."""
    if code == 401:
        cause = (
            "the server refused the signature: WEBHOOK_SECRET must be the App's webhook "
            "secret (App settings > Webhook secret)"
        )
    elif code in (404, 405):
        cause = (
            "the App's webhook URL does not reach this server's WEBHOOK_PATH "
            "(default /api/github/webhooks): correct it in the App's settings"
        )
    elif code == 0:
        cause = (
            "GitHub could not connect to the App's webhook URL: it must be public and "
            "reach this server (App settings > Webhook URL)"
        )
    elif code >= 500:
        cause = "the server failed to answer: see its log"
    else:
        cause = "the server did not answer 2xx: see `ghapp deliveries show ID`"
    return cause + "; then resend what was lost: ghapp deliveries redeliver-failed --since 3d"


def judge_deliveries(answer: Answer, api_url: str) -> SetupCheck:
    """GitHub's recent deliveries to the App (`GET /app/hook/deliveries`) were answered 2xx:
    every delivery (a guid, over its attempts and redeliveries) got a 2xx at least once."""
    if answer.status is None or answer.status >= 500:
        return unreachable("webhooks", api_url, answer)
    if not answer.ok or not isinstance(answer.body, Sequence):
        return failed(
            "webhooks",
            f"GitHub answered {_said(answer)} for the App's deliveries",
            "the App's JWT must be accepted (see app_key)",
        )
    items = [item for item in answer.body if isinstance(item, Mapping)]
    if not items:
        return failed(
            "webhooks",
            "GitHub lists no webhook delivery to this App in its record (a few days): "
            "nothing shows that webhooks reach this server",
            "check that the App's webhook is active and its URL reaches this server's "
            "WEBHOOK_PATH (App settings > Webhook); a deploy makes deliveries, then run the "
            "check again",
        )
    answered = {str(item.get("guid")) for item in items if 200 <= _status_code(item) < 300}
    lost = [item for item in items if str(item.get("guid")) not in answered]
    guids = {str(item.get("guid")) for item in items}
    if not lost:
        latest = (
            "latest webhook delivery was"
            if len(guids) == 1
            else f"{len(guids)} latest webhook deliveries were all"
        )
        return passed("webhooks", f"the App's {latest} answered 2xx")
    newest = lost[0]  # GitHub lists them newest first
    lost_guids = {str(item.get("guid")) for item in lost}
    event = one_line(str(newest.get("event") or "?"), 60)
    status = one_line(str(newest.get("status") or _status_code(newest)), 100)
    when = one_line(str(newest.get("delivered_at") or "?"), 40)
    return failed(
        "webhooks",
        f"{len(lost_guids)} of the App's {len(guids)} latest webhook deliveries got no 2xx "
        f"answer; the newest of them: {event} at {when}, {status}",
        _delivery_fix(_status_code(newest)),
    )


def judge_callback(
    url: str | None, allowed_hosts: Sequence[str], answer: Answer | None, *, signed: bool = True
) -> SetupCheck:
    """ORCHESTRATOR_CALLBACK_URL answers a signed `X-Ghapp-Event: ping` with 2xx."""
    if not signed:
        return failed(
            "callback",
            "CALLBACK_SECRET is not set: no callback can be signed",
            "set CALLBACK_SECRET, at least 16 characters (ghapp setup generates one) and give "
            "it to the orchestrator",
        )
    if url is None or answer is None:
        if allowed_hosts:
            return passed(
                "callback",
                "ORCHESTRATOR_CALLBACK_URL is not set: every request names its callback_url "
                f"(CALLBACK_ALLOWED_HOSTS: {', '.join(allowed_hosts)}); nothing to ping",
            )
        return failed(
            "callback",
            "ORCHESTRATOR_CALLBACK_URL is not set, nor CALLBACK_ALLOWED_HOSTS: every deploy "
            "request is refused (422)",
            "set ORCHESTRATOR_CALLBACK_URL to the orchestrator's callback URL "
            "(ghapp setup --callback-url URL writes it)",
        )
    if answer.status is None:
        return failed(
            "callback",
            f"{url} did not answer the signed ping ({one_line(answer.error or 'no answer')})",
            "check ORCHESTRATOR_CALLBACK_URL and that the orchestrator listens there and is "
            "reachable from this server",
        )
    if answer.ok:
        return passed("callback", f"{url} answered the signed ping with {answer.status}")
    if 300 <= answer.status < 400:
        fix = "ghapp does not follow redirects: set ORCHESTRATOR_CALLBACK_URL to the final URL"
    elif answer.status in (401, 403):
        fix = (
            "the orchestrator refused the signature: it must verify with the same "
            "CALLBACK_SECRET as this server (and accept `X-Ghapp-Event: ping`)"
        )
    else:
        fix = (
            "the orchestrator must answer 2xx to every callback whose X-Ghapp-Signature-256 "
            "checks out, `X-Ghapp-Event: ping` included (its body is "
            '{"event": "ping", "sent_at": ...}, no deployment)'
        )
    return failed("callback", f"{url} answered the signed ping with {answer.status}", fix)
