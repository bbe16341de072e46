"""Set keys in a `.env` file without disturbing its other lines."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+,-]*$")


def quote(value: str) -> str:
    """The value as a `.env` line writes it: bare when safe, else double-quoted."""
    if _PLAIN.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _spans(lines: list[str]) -> list[tuple[str | None, int, int]]:
    """(key or None, first line, end line) for each logical entry; quoted values may span lines."""
    spans: list[tuple[str | None, int, int]] = []
    index = 0
    while index < len(lines):
        match = _ASSIGNMENT.match(lines[index])
        if match is None or lines[index].lstrip().startswith("#"):
            spans.append((None, index, index + 1))
            index += 1
            continue
        end = index + 1
        value = match.group(2)
        for quote_char in ('"', "'"):
            if value.startswith(quote_char) and not _closes(value[1:], quote_char):
                while end < len(lines) and not _closes(lines[end], quote_char):
                    end += 1
                end = min(end + 1, len(lines))
        spans.append((match.group(1), index, end))
        index = end
    return spans


def _closes(text: str, quote_char: str) -> bool:
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote_char == '"':
            escaped = True
        elif char == quote_char:
            return True
    return False


def read_env_file(path: Path) -> dict[str, str]:
    """The values an env file sets (as the settings read them: python-dotenv), {} if absent."""
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def file_mode(path: Path) -> int | None:
    """The permission bits of a regular file (not followed through a symlink), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else None


def update_env_file(
    path: Path,
    values: Mapping[str, str],
    *,
    comment_out: Iterable[str] = (),
    header: str = "",
    notes: Mapping[str, str] | None = None,
    mode: int | None = None,
) -> list[str]:
    """Set `values` (replacing those keys in place), comment out `comment_out`; keys changed.

    A key added at the end gets its `notes` line (a comment) above it. `mode`: the file's mode
    afterwards (default: an existing file's own, 0600 for a new one)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    disabled = set(comment_out) - set(values)
    written: set[str] = set()
    out: list[str] = []
    changed: list[str] = []
    for key, start, end in _spans(lines):
        if key is not None and key in values:
            if key not in written:
                out.append(f"{key}={quote(values[key])}")
                written.add(key)
                changed.append(key)
            continue
        if key is not None and key in disabled:
            out.extend(f"# {line}" for line in lines[start:end])
            changed.append(key)
            continue
        out.extend(lines[start:end])
    missing = [key for key in values if key not in written]
    if missing:
        if out and out[-1].strip():
            out.append("")
        if header:
            out.append(f"# {header}")
        for key in missing:
            if notes and key in notes:
                out.append(f"# {notes[key]}")
            out.append(f"{key}={quote(values[key])}")
        changed.extend(missing)
    _write_private(path, "\n".join(out) + "\n", mode)
    return changed


def _write_private(path: Path, text: str, mode: int | None = None) -> None:
    """Replace `path` with `text` without following a symlink planted at `path` or beside it.

    The text goes to a new file with a random name in the same folder (created exclusively,
    mode 0600), then takes the place of `path` (a symlink there is replaced, not written through).
    """
    if mode is None:
        # The file holds secrets: keep the mode of a regular file there, else owner-only.
        existing = file_mode(path)
        mode = existing & 0o777 if existing is not None else 0o600
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_secret_file(path: Path, text: str) -> None:
    """Write a file readable by its owner only (mode 0600), even if it existed before."""
    _write_private(path, text, 0o600)
