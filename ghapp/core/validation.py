"""The bounds of a request's fields: GitHub's names, refs and limits, callback URLs and
metadata, as patterns (published in the OpenAPI description) and checks."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# GitHub's characters for an owner or a repository name; `.` and `..` are not names.
NAME_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$"
_NAME = r"(?!\.\.?/)[A-Za-z0-9._-]{1,100}/(?!\.\.?$)[A-Za-z0-9._-]{1,100}"
REPOSITORY_PATTERN = f"^{_NAME}$"
# A workflow file name, or its numeric id (a 64-bit integer).
WORKFLOW_PATTERN = r"^(?:[A-Za-z0-9_.-]{1,250}\.ya?ml|[0-9]{1,18})$"
# A branch or tag: no whitespace, no control characters. Spelt out, not `\s`: Python's and
# ECMA's (the OpenAPI description's) `\s` differ.
REF_PATTERN = (
    r"^[^\x00-\x20\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
    r"{1,255}$"
)
REF_MAX = 255
CALLBACK_URL_MAX = 2048
# GitHub's limits on a dispatch's inputs.
INPUTS_MAX_KEYS = 25
INPUTS_MAX_CHARS = 65_535
INPUT_NAME_MAX = 100

REPOSITORY_RE = re.compile(REPOSITORY_PATTERN)
WORKFLOW_RE = re.compile(WORKFLOW_PATTERN)
REF_RE = re.compile(REF_PATTERN)
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")


def valid_name(name: str) -> bool:
    """Whether an owner or repository name keeps to GitHub's characters (and is not . or ..)."""
    return re.fullmatch(NAME_PATTERN, name) is not None


def callback_url_problem(url: str) -> str | None:
    """What is wrong with a callback URL (scheme, credentials, characters, port), or None."""
    if _CONTROL.search(url):
        return "must not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry a user or password"
    if not parts.hostname:
        return "must name a host"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if port == 0:
        return "has an invalid port"
    return None


# Metadata keys are used in query strings (`metadata.KEY=VALUE`): keep them plain.
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,40}$"
_METADATA_KEY = re.compile(METADATA_KEY_PATTERN)
METADATA_MAX_KEYS = 20
METADATA_MAX_VALUE = 500


def check_metadata(value: dict[str, str]) -> dict[str, str]:
    """The orchestrator's own ids as docs/api.md bounds them, or a ValueError naming the key."""
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"at most {METADATA_MAX_KEYS} keys")
    for key, item in value.items():
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"key {key[:50]!r}: 1 to 40 letters, digits or '_', '.', ':', '-'")
        if len(item) > METADATA_MAX_VALUE or "\x00" in item:
            raise ValueError(f"value of {key!r}: at most {METADATA_MAX_VALUE} characters, no NUL")
    return value


def check_callback_url(value: str | None) -> str | None:
    """An http(s) URL ghapp may call back (see callback_url_problem), or a ValueError."""
    if value is not None and (problem := callback_url_problem(value)) is not None:
        raise ValueError(problem)
    return value
