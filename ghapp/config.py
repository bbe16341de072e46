"""Settings: every variable of docs/reference/settings.md, from the environment and `.env`."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ghapp.core.causes import CauseRules, RulesError, load_rules
from ghapp.core.signatures import standard_key
from ghapp.core.signin import github_url_from_api, parse_teams

if TYPE_CHECKING:
    from ghapp.core.gate_policies import Policies

# Shortest ORCHESTRATOR_TOKEN and CALLBACK_SECRET accepted; shorter WEBHOOK_SECRETs get a warning.
MIN_SECRET = 16
# APP_ID: the App's numeric id, or its client id: `Iv1.` and 16 hex digits for Apps made before
# 2024, `Iv23li` and 14 more letters or digits since (the JWT's `iss` may be either).
APP_ID = re.compile(r"^[1-9][0-9]{0,19}$")
CLIENT_ID = re.compile(r"^(?:Iv1\.[0-9a-fA-F]{16}|Iv2[0-9][A-Za-z0-9]{16})$")


class SettingsError(Exception):
    """Settings are missing or malformed: one line per problem, each naming its variable."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """ghapp's configuration; names follow Probot's where Probot has one."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # Each field's docstring is its meaning in `ghapp serve --help`: written once, here.
        use_attribute_docstrings=True,
    )

    app_id: str | None = None
    """the GitHub App's id, or its client id (Iv1.../Iv23...); required to serve"""
    private_key: str | None = Field(default=None, repr=False)
    """the App's PEM private key inline (a literal \\n stands for a newline); wins over the path"""
    private_key_path: Path | None = None
    """a file holding the App's PEM private key (this or PRIVATE_KEY is required to serve)"""
    webhook_secret: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    """the App's webhook secret; a comma-separated list during a rotation; required to serve"""
    webhook_path: str = "/api/github/webhooks"
    """where GitHub posts webhooks"""
    github_api_url: str = "https://api.github.com"
    """GitHub's REST API (https://HOST/api/v3 for GitHub Enterprise Server)"""
    host: str = "0.0.0.0"
    """the address to listen on"""
    port: int = Field(default=3000, ge=0, le=65535)
    """the port to listen on"""
    orchestrator_token: str | None = Field(default=None, repr=False)
    """the bearer token the orchestrator presents (16+ characters); required to serve"""
    orchestrator_callback_url: str | None = None
    """the callback URL of a deploy request that names none"""
    callback_secret: str | None = Field(default=None, repr=False)
    """the HMAC key that signs every callback (16+ characters); required to serve"""
    callback_secret_previous: str | None = Field(default=None, repr=False)
    """while rotating CALLBACK_SECRET: the previous secret; callbacks carry both signatures"""
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """hosts (or host:port) a request's callback_url may name; default: the callback URL's"""
    database_url: str = "sqlite:///ghapp.db"
    """sqlite:///PATH, or postgresql://... for several replicas"""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """debug, info, warning, error or critical"""
    log_format: Literal["pretty", "json"] | None = None
    """pretty or json; default: pretty on a terminal, else json"""
    poll_after: float = Field(default=60, gt=0)
    """seconds of silence about a deployment before its run is polled"""
    run_lookup_timeout: float = Field(default=600, gt=0)
    """seconds to find a dispatch's run before the verdict is run_not_found"""
    run_timeout: float = Field(default=21600, gt=0)
    """seconds a run may go on before the verdict is timed_out"""
    report_timeout: float = Field(default=300, gt=0)
    """seconds to gather a failure report before the verdict goes out with what is known"""
    callback_retry_base: float = Field(default=2, gt=0)
    """seconds before the first callback retry (then doubling, with jitter)"""
    callback_retry_max_interval: float = Field(default=600, gt=0)
    """the longest wait between two callback attempts, in seconds"""
    callback_retry_for: float = Field(default=86400, gt=0)
    """seconds of callback retries before a callback is failed"""
    delivery_log_days: float = Field(default=3, ge=0)
    """days the local log of received webhook deliveries is kept (0: no log)"""
    auto_redeliver: bool = False
    """ask GitHub every 5 minutes to redeliver failed webhook deliveries"""
    # Only a label for requests without inputs.environment; nothing is added to the dispatch.
    default_environment: str = Field(default="production", min_length=1, max_length=100)
    """the environment recorded for a request without inputs.environment (a label only)"""
    # Extra failure-cause rules, tried before the built-in ones.
    cause_rules_path: Path | None = None
    """a YAML file of your own failure-cause rules, tried before the built-in ones"""
    max_streams: int = Field(default=1000, ge=1)
    """open event streams per process; past it a new one is answered 503 (docs/limits.md)"""
    audit_days: float = Field(default=365, gt=0)
    """days audit rows are kept; pruning keeps the chain verifiable (docs/access.md)"""
    gate: Literal["off", "on"] = "off"
    """on: answer GitHub's deployment protection rule requests (the gate); off: approve them all"""
    gate_foreign: Literal["reject", "approve", "hold"] = "reject"
    """what the gate does with a run ghapp did not dispatch: reject, approve or hold"""
    gate_policy_path: Path | None = None
    """a YAML file of gate policies (freeze windows, promotion order); checked at start-up"""
    github_client_id: str | None = None
    """the App's OAuth client id (written by `ghapp setup`); sign-in with GitHub uses it"""
    github_client_secret: str | None = Field(default=None, repr=False)
    """the App's OAuth client secret (written by `ghapp setup`)"""
    page_auth: Literal["token", "github"] = "token"
    """operator page sign-in: token (an admin token) or github (docs/signin.md)"""
    page_teams: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """org/team,...: who may read the operator page when PAGE_AUTH=github"""
    page_admin_teams: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """org/team,...: who may act on the operator page (rollback, cancel, gate decisions)"""
    public_url: str | None = None
    """ghapp's address as browsers reach it (sign-in with GitHub's callback)"""
    github_url: str | None = None
    """GitHub's web host, where browsers sign in; default: derived from GITHUB_API_URL"""
    _cause_rules: CauseRules | None = PrivateAttr(default=None)
    _gate_policies: Any = PrivateAttr(default=None)  # Policies, loaded at first use

    @field_validator("webhook_secret", "callback_allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("page_teams", "page_admin_teams", mode="before")
    @classmethod
    def _teams(cls, value: object) -> object:
        if isinstance(value, str):
            return list(parse_teams(value))
        return value

    @field_validator("public_url", "github_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    def web_url(self) -> str:
        """GITHUB_URL, or its default derived from GITHUB_API_URL."""
        return self.github_url or github_url_from_api(self.github_api_url)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("app_id", mode="before")
    @classmethod
    def _empty_app_id(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not APP_ID.match(value) and not CLIENT_ID.match(value):
            raise ValueError(
                f"{value!r} is neither the App's id (a number) nor its client id (Iv1.../Iv23...)"
            )
        return value

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("github_api_url", "orchestrator_callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///PATH or postgresql://...")
        return value

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # Platforms that cannot hold multi-line variables pass the PEM with literal \n.
        value = value.replace("\\n", "\n").strip() + "\n"
        if "-----BEGIN" not in value:
            raise ValueError("is not a PEM private key (no -----BEGIN line)")
        return value

    @field_validator("private_key_path")
    @classmethod
    def _pem_file(cls, value: Path | None) -> Path | None:
        # Several files separated by `:` while the App's key is rotated.
        for part in str(value).split(":") if value is not None else ():
            if not Path(part).is_file():
                raise ValueError(f"file {part} does not exist")
        return value

    @field_validator("callback_allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parts = urlsplit("//" + entry)
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise ValueError(f"{entry!r} is not a host or host:port") from None
            if not parts.hostname or parts.path or parts.query or "@" in entry:
                raise ValueError(f"{entry!r} is not a host or host:port")
        return [entry.lower() for entry in value]

    def weak_webhook_secrets(self) -> int:
        """How many WEBHOOK_SECRET entries are shorter than MIN_SECRET (a start-up warning)."""
        return sum(len(secret) < MIN_SECRET for secret in self.webhook_secret)

    @field_validator("gate", "gate_foreign", mode="before")
    @classmethod
    def _lower_choice(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("gate_policy_path", mode="before")
    @classmethod
    def _no_policy_file(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("gate_policy_path")
    @classmethod
    def _gate_policy_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        # The gate's policies load only where a file is set (idle memory).
        from ghapp.core.gate_policies import PolicyError, load_policies

        try:
            load_policies(value)  # checked whole at start-up: a bad policy stops ghapp here
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        return value

    def gate_policies(self) -> Policies:
        """The gate's policies (GATE_POLICY_PATH), loaded once."""
        from ghapp.core.gate_policies import load_policies

        if self._gate_policies is None:
            self._gate_policies = load_policies(self.gate_policy_path)
        policies: Policies = self._gate_policies
        return policies

    @field_validator("cause_rules_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cause_rules_path")
    @classmethod
    def _cause_rules_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            load_rules(value)  # checked whole at start-up: a bad rule stops ghapp here
        except RulesError as exc:
            raise ValueError(str(exc)) from None
        return value

    def cause_rules(self) -> CauseRules:
        """The user's cause rules (CAUSE_RULES_PATH) then the built-in ones, loaded once."""
        if self._cause_rules is None:
            self._cause_rules = load_rules(self.cause_rules_path)
        return self._cause_rules


    def app_private_key(self) -> str:
        """The App's PEM private key, inline or read from PRIVATE_KEY_PATH."""
        if self.private_key:
            return self.private_key
        return self.app_private_keys()[0]

    def app_private_keys(self) -> list[str]:
        """Every App key: PRIVATE_KEY, or each file of PRIVATE_KEY_PATH (`:`-separated, the
        first signs; the others are tried when GitHub refuses it)."""
        if self.private_key:
            return [self.private_key]
        if self.private_key_path:
            return [Path(part).read_text() for part in str(self.private_key_path).split(":")]
        raise SettingsError("PRIVATE_KEY: set PRIVATE_KEY or PRIVATE_KEY_PATH")

    def require_for_serve(self) -> None:
        """Raise SettingsError naming every setting `ghapp serve` cannot do without."""
        problems = self.serve_problems()
        if problems:
            raise SettingsError(*problems)

    def serve_problems(self, skip: Iterable[str] = ()) -> list[str]:
        """One line per setting `ghapp serve` lacks (but those named in `skip`)."""
        skipped = set(skip)
        problems = []
        if not self.app_id:
            problems.append("APP_ID: required to serve (the GitHub App's id)")
        if not self.private_key and not self.private_key_path:
            problems.append("PRIVATE_KEY: set PRIVATE_KEY or PRIVATE_KEY_PATH")
        if not self.webhook_secret:
            problems.append("WEBHOOK_SECRET: required (the App's webhook secret)")
        for name, value in (
            ("ORCHESTRATOR_TOKEN", self.orchestrator_token),
            ("CALLBACK_SECRET", self.callback_secret),
        ):
            if not value:
                problems.append(f"{name}: required to serve")
            elif len(value) < MIN_SECRET:
                problems.append(
                    f"{name}: must be at least {MIN_SECRET} characters "
                    f"(it has {len(value)}; e.g. openssl rand -hex 32)"
                )
        previous = self.callback_secret_previous
        if previous is not None and len(previous) < MIN_SECRET:
            problems.append(f"CALLBACK_SECRET_PREVIOUS: must be at least {MIN_SECRET} characters")
        for name, secret in (
            ("CALLBACK_SECRET", self.callback_secret),
            ("CALLBACK_SECRET_PREVIOUS", self.callback_secret_previous),
        ):
            if secret and len(secret) >= MIN_SECRET:
                try:
                    # `whsec_<base64>`: the Standard Webhooks key (docs/callback-signatures.md).
                    standard_key(secret)
                except ValueError as exc:
                    problems.append(f"{name}: {exc}")
        if self.private_key or self.private_key_path:
            try:
                for key in self.app_private_keys():
                    check_key_loads(key)
            except SettingsError as exc:
                problems.extend(exc.problems)
        if self.page_auth == "github":
            if not self.page_teams:
                problems.append("PAGE_TEAMS: required when PAGE_AUTH=github (org/team,...)")
            if not self.public_url:
                problems.append("PUBLIC_URL: required when PAGE_AUTH=github")
            if not self.github_client_id or not self.github_client_secret:
                problems.append("GITHUB_CLIENT_ID: PAGE_AUTH=github needs GITHUB_CLIENT_ID "
                                "and GITHUB_CLIENT_SECRET")
        return [line for line in problems if line.split(":", 1)[0] not in skipped]

    def effective_log_format(self) -> str:
        """`pretty` on a terminal, `json` otherwise, unless LOG_FORMAT says."""
        if self.log_format:
            return self.log_format
        return "pretty" if sys.stderr.isatty() else "json"


def check_key_loads(pem: str) -> None:
    """Raise SettingsError unless the PEM holds an RSA private key (PKCS#1 or PKCS#8).

    Read with the standard library: cryptography (~8 MiB resident) is loaded only when the
    first App JWT is signed, which an idle server may never do."""
    try:
        _rsa_private_key_der(pem)
    except (ValueError, IndexError) as exc:
        raise SettingsError(f"PRIVATE_KEY: the key does not load ({exc})") from None


_PEM = re.compile(
    r"-----BEGIN (RSA )?PRIVATE KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1?PRIVATE KEY-----"
)
# DER of the rsaEncryption algorithm's OID (1.2.840.113549.1.1.1).
_RSA_OID = bytes.fromhex("06092a864886f70d010101")


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) items one after another in a DER string."""
    items, at = [], 0
    while at < len(data):
        tag, length = data[at], data[at + 1]
        at += 2
        if length & 0x80:
            size = length & 0x7F
            if not 0 < size <= 4:
                raise ValueError("bad DER length")
            length = int.from_bytes(data[at : at + size], "big")
            at += size
        if at + length > len(data):
            raise ValueError("truncated DER")
        items.append((tag, data[at : at + length]))
        at += length
    return items


def _rsa_private_key_der(pem: str) -> None:
    found = _PEM.search(pem)
    if found is None:
        raise ValueError("no RSA PRIVATE KEY or PRIVATE KEY block")
    body = base64.b64decode("".join(found.group(2).split()), validate=True)
    ((tag, content),) = _der_items(body) or [(0, b"")]
    if tag != 0x30:
        raise ValueError("not a DER sequence")
    fields = _der_items(content)
    if found.group(1) is None:  # PKCS#8: version, algorithm, the PKCS#1 key as an octet string
        if len(fields) < 3 or not fields[1][1].startswith(_RSA_OID) or fields[2][0] != 0x04:
            raise ValueError("not an RSA key")
        ((tag, content),) = _der_items(fields[2][1])
        fields = _der_items(content) if tag == 0x30 else []
    # RSAPrivateKey: version, n, e, d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p.
    if len(fields) < 9 or any(tag != 0x02 for tag, _ in fields[:9]):
        raise ValueError("not an RSA private key")


def _problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """(field, `NAME: what is wrong`) of one of pydantic's errors."""
    field = str(error["loc"][0]) if error["loc"] else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    return field, f"{field.upper()}: {message}"


def load_settings(*, for_serve: bool = False, **overrides: object) -> Settings:
    """Read the settings; SettingsError lists every malformed one (and with `for_serve`, every
    one `ghapp serve` lacks), one line each."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        found = dict(_problem(error) for error in exc.errors())
        if not for_serve:
            raise SettingsError(*found.values()) from None
        # The others are read again without the malformed ones, to say what is missing too.
        defaults = {
            name: Settings.model_fields[name].get_default(call_default_factory=True)
            for name in found
            if name in Settings.model_fields
        }
        try:
            rest = Settings(**{**overrides, **defaults})
        except ValidationError:
            raise SettingsError(*found.values()) from None
        skip = {name.upper() for name in found}
        if "private_key_path" in found:
            skip.add("PRIVATE_KEY")
        raise SettingsError(*found.values(), *rest.serve_problems(skip)) from None
    if for_serve:
        settings.require_for_serve()
    return settings


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def settings_help() -> str:
    """Every setting with its default and meaning, from the model (for `ghapp serve --help`)."""
    lines = ["settings (environment variables, also read from ./.env; the environment wins):"]
    for name, field in Settings.model_fields.items():
        lines.append(f"  {name.upper()} (default: {_default(name)})")
        lines.append(f"      {field.description or 'see docs/reference/settings.md'}")
    return "\n".join(lines)
