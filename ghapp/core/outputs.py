"""The run's outputs: the names a request may ask for, the `name=value` file the template uploads
as the artifact `ghapp-outputs`, and what the verdict says of them (docs/traces-and-outputs.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ghapp.core import untrusted

ARTIFACT_NAME = "ghapp-outputs"
# At most this many names per request, each a shell-friendly identifier.
OUTPUTS_MAX = 20
OUTPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"
NAME_RE = re.compile(OUTPUT_NAME_PATTERN)
# Each value kept is at most this long; the artifact is read only up to this size unzipped.
VALUE_MAX = 1000
ARTIFACT_MAX_BYTES = 64 * 1024


def check_names(names: list[str]) -> list[str]:
    """The request's `outputs`, or ValueError saying what is wrong with them."""
    if len(names) > OUTPUTS_MAX:
        raise ValueError(f"at most {OUTPUTS_MAX} names")
    for name in names:
        if not NAME_RE.fullmatch(name):
            raise ValueError(
                f"{name[:100]!r} is not an output name: a letter or '_', then letters, digits, "
                "'_', '.' or '-', at most 100 characters"
            )
    if len(set(names)) != len(names):
        raise ValueError("each name at most once")
    return names


def is_outputs_artifact(name: str) -> bool:
    """Whether an artifact carries outputs: `ghapp-outputs`, or `ghapp-outputs-<job>`."""
    return name == ARTIFACT_NAME or name.startswith(ARTIFACT_NAME + "-")


def parse(texts: Iterable[str]) -> dict[str, str]:
    """The `name=value` lines of the artifacts' files in order: the first `=` splits a line,
    later lines win, a line without `=` is ignored."""
    found: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            name = name.strip()
            if sep and name:
                found[name] = value
    return found


def pick(found: dict[str, str], wanted: list[str]) -> dict[str, str]:
    """The values of the names asked for (remote text: cleaned, at most VALUE_MAX characters)."""
    return {
        name: untrusted.clean(found[name])[:VALUE_MAX] for name in wanted if name in found
    }


def missing_note(wanted: list[str], outputs: dict[str, str], problem: str | None) -> str:
    """The sentence the summary ends with when an asked output is missing ('' when none is)."""
    missing = [name for name in wanted if name not in outputs]
    if not missing:
        return ""
    listed = ", ".join(f"`{name}`" for name in missing)
    noun = "output" if len(missing) == 1 else "outputs"
    why = f" ({problem})" if problem else ""
    return f" Missing {noun}: {listed}{why}."
