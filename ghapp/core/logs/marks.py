"""The lines of a job log that matter to the excerpt: step start markers and errors, found
line by line or, in bulk, by substring scans over a whole chunk."""

from __future__ import annotations

from ghapp.core.logs.section import ERROR_MARK, content_offset, has_timestamp

GROUP_RUN = b"##[group]Run "
# What each kind of step prints first: run and action steps, post steps, "Complete job",
# "Set up job".
RUNNER_MARKS = (b"Post job cleanup.", b"Cleaning up orphan processes", b"Current runner version")
MARKS = (GROUP_RUN, *RUNNER_MARKS)
NO_MARK, GROUP, RUNNER = 0, 1, 2


def lines_with(chunk: bytes, lines: list[bytes], needle: bytes) -> list[int]:
    """Indexes of the lines that contain ``needle``; ``lines`` is ``chunk`` split, its first
    line prefixed by the previous chunk's unfinished one."""
    # Search the chunk, not each line: ``find`` and ``count`` run in C over the whole buffer,
    # where a per-line ``in`` costs hundreds of nanoseconds a line.
    found = [0] if needle in lines[0] else []
    index, counted = 0, 0
    pos = chunk.find(needle)
    while pos >= 0:
        index += chunk.count(b"\n", counted, pos)
        counted = pos
        if index >= len(lines):
            break  # in the unfinished last line: seen again with the next chunk
        if not found or found[-1] != index:
            found.append(index)
        end = chunk.find(b"\n", pos)
        if end < 0:
            break
        pos = chunk.find(needle, end)
    return found


def starts(line: bytes, prefix: bytes) -> bool:
    """Whether a line's text (after its timestamp, if any) starts with ``prefix``."""
    return line.startswith(prefix, content_offset(line) if has_timestamp(line) else 0)


def classify(line: bytes, last_ts: bytes | None) -> tuple[bytes | None, bool, int]:
    """A line's timestamp second (or the one before it), whether it is an error, its marker."""
    if has_timestamp(line):
        ts: bytes | None = line[:19]
        start = content_offset(line)
    else:
        ts, start = last_ts, 0
    if line.startswith(ERROR_MARK, start):
        return ts, True, NO_MARK
    if line.startswith(MARKS, start):
        return ts, False, GROUP if line.startswith(GROUP_RUN, start) else RUNNER
    return ts, False, NO_MARK
