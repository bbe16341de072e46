"""Cause rules run in time linear in the text: crafted lines, generated adversarial lines, and
user rules the linear-time engine (RE2) refuses stopping start-up with one line."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghapp.config import SettingsError, load_settings
from ghapp.core.causes import Failure, Rule, RulesError, default_rules, load_file
from ghapp.core.rule_patterns import Pattern, encode
from ghapp.simulator.stack import serve_settings

CRAFTED = yaml.safe_load((Path(__file__).parent / "data" / "causes_crafted.yml").read_text())
MIB = 1024 * 1024
RULES = default_rules().rules
FIELDS = ("step", "log", "annotation", "reason")
# What the backtracking engine took seconds to minutes for (253 s for one rule on 1 MiB); a
# linear-time search of 1 MiB takes milliseconds. Generous for a loaded 2-core machine.
SECONDS_PER_MIB = 1.0


def crafted(repeat: str, size: int) -> str:
    return (repeat * (size // len(repeat) + 1))[:size]


def patterns_of(rule: Rule) -> list[tuple[str, Pattern]]:
    named = ((field, getattr(rule, field)) for field in FIELDS)
    return [(field, pattern) for field, pattern in named if pattern is not None]


def seconds(pattern: Pattern, data: bytes, rounds: int = 5) -> float:
    """This thread's CPU time for one search, the best of a few rounds (a shared machine's
    other work shows in wall time, and its bursts in any one round)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        pattern.find(data)
        best = min(best, time.thread_time() - started)
    return best


def test_the_crafted_lines_are_the_ones_that_were_quadratic() -> None:
    # Each crafted line names a built-in rule it was found against, and the lead matches none.
    ids = {rule.id for rule in RULES}
    assert {item["rule"] for item in CRAFTED["lines"]} <= ids
    lead = default_rules().classify(Failure(reason="failure", log=CRAFTED["lead"]))
    assert lead.rule == "unknown"


@pytest.mark.parametrize("item", CRAFTED["lines"], ids=lambda item: item["rule"])
def test_every_rule_searches_a_crafted_mib_line_quickly(item: dict[str, str]) -> None:
    data = encode(crafted(item["repeat"], MIB))
    for rule in RULES:
        for field, pattern in patterns_of(rule):
            took = seconds(pattern, data, rounds=1)
            assert took < SECONDS_PER_MIB, f"{rule.id} {field}: {took:.2f} s on 1 MiB"


def test_a_crafted_excerpt_of_several_mib_is_classified_quickly() -> None:
    # The lead first (so no prefilter spares a rule), then every crafted line at 1 MiB.
    lines = [CRAFTED["lead"], *(crafted(item["repeat"], MIB) for item in CRAFTED["lines"])]
    failure = Failure(reason="failure", step="Build the image", log="\n".join(lines))
    started = time.perf_counter()
    cause = default_rules().classify(failure)
    took = time.perf_counter() - started
    assert cause.category == "code"  # the step fallback: no log rule matched
    assert took < SECONDS_PER_MIB * len(lines), f"{took:.2f} s"


# --- generated adversarial lines ------------------------------------------------------------

_CLASSES = re.compile(r"\\[dDsSwWbBzA]")
_ESCAPE = re.compile(r"\\(.)")
_OPERATORS = re.compile(r"[()|?*+\[\]{}^$]|\(\?:")
FILLERS = ["1", "9", "42", "0.5", " ", "  ", "\t", ":", "/", '"', ".", "-", "#", "x"]


def fragments(source: str) -> list[str]:
    """The rule's own literals, roughly: runs between regular-expression operators, and their
    words (what a line that almost matches, again and again, is made of)."""
    text = _ESCAPE.sub(r"\1", _CLASSES.sub(" ", source))
    pieces = [piece for piece in _OPERATORS.split(text) if piece.strip()]
    words = [word for piece in pieces for word in piece.split()]
    return sorted({*pieces, *words, *(piece + " " for piece in pieces)})


# Linear time makes 4 times the text take about 4 times as long (16 times if quadratic).
RATIO_LIMIT = 10.0
# Below this, a search is too quick to time reliably, and a quadratic one cannot be this quick
# (the backtracking engine took seconds on a quarter of a megabyte).
TIMER_FLOOR = 0.0002
# Small enough that the text stays in the processor's caches at both sizes: past a few MiB a
# linear scan slows per byte for want of cache, which is not what this measures.
SIZE = 128 * 1024


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_each_rule_is_linear_on_adversarial_lines(rule: Rule, data: st.DataObject) -> None:
    for field, pattern in patterns_of(rule):
        pieces = st.sampled_from(fragments(pattern.source) + FILLERS)
        unit = data.draw(st.lists(pieces, min_size=1, max_size=6).map("".join), label=field)
        small = encode(crafted(unit, SIZE))
        large = encode(crafted(unit, 4 * SIZE))
        pattern.find(large)  # RE2 builds its automaton's states lazily: not part of the timing
        short, long = seconds(pattern, small), seconds(pattern, large)
        assert long < SECONDS_PER_MIB, f"{rule.id} {field} on {unit!r}: {long:.2f} s"
        assert long <= RATIO_LIMIT * max(short, TIMER_FLOOR), (
            f"{rule.id} {field} on {unit!r}: {short * 1000:.2f} ms for 128 KiB, "
            f"{long * 1000:.2f} ms for 512 KiB"
        )


# --- the one rule that needed a lookahead ---------------------------------------------------

LOOKAHEAD_FORM = re.compile(
    r"^(?!.*\b(?:push|publish|deploy|release|upload))"
    r".*\b(?:build|compile|tests?|lint|typecheck|type-check|pytest|jest|vitest|tsc"
    r"|npm (?:ci|test|run)|yarn|pnpm|go (?:build|test|vet)|cargo|make)\b",
    re.IGNORECASE | re.MULTILINE,
)
STEP_WORDS = [
    "Build", "build", "push", "Push", "pushed", "publisher", "deploy", "Deployment", "redeploy",
    "release", "Released", "upload", "uploads", "pus", "pub", "depl", "relea", "uplo", "test",
    "Tests", "tester", "lint", "npm", "ci", "run", "go", "vet", "type", "check", "type-check",
    "typecheck", "cargo", "make", "and", "the", "image", "docker", "pytest", "jest", "vitest",
    "tsc", "yarn", "pnpm", "compile", "_build", "b2", "up", "re", "de", "p", "u", "r", "d",
]
STEP_SEPARATORS = [" ", "-", "_", " / ", ".", ": ", "(", ")", "  ", "", "&", "'", "\n"]


@settings(max_examples=2000, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(STEP_WORDS), st.sampled_from(STEP_SEPARATORS)),
        min_size=1, max_size=7,
    ),
    st.sampled_from(["", " ", "(", "-"]),
)
def test_the_build_step_rule_means_what_its_lookahead_meant(
    parts: list[tuple[str, str]], lead: str
) -> None:
    (rule,) = [rule for rule in RULES if rule.id == "step.build-or-test"]
    assert rule.step is not None
    name = lead + "".join(word + separator for word, separator in parts)
    assert rule.step.search(name) is bool(LOOKAHEAD_FORM.search(name)), name


# --- rules the linear-time engine refuses ---------------------------------------------------

POSSESSIVE = "possessive repeats and atomic groups are not supported"
REFUSED = [
    ("(a)\\1", "invalid escape sequence: \\1; backreferences are not supported"),
    ("(?=deploy)deploy failed", "invalid perl operator: (?=; lookarounds are not supported"),
    ("(?<!not )set", "invalid perl operator: (?<!; lookarounds are not supported"),
    ("a++", f"bad repetition operator: ++; {POSSESSIVE}"),
    ("(?>ab)c", f"invalid perl operator: (?>; {POSSESSIVE}"),
    ("[a-z]{1000}" * 30,
     "pattern too large - compile failed; its automaton would need over 1 MiB; make it smaller"),
]


def _user_rule(tmp_path: Path, pattern: str) -> Path:
    path = tmp_path / "rules.yml"
    rule = {"id": "acme.slow", "category": "code", "hint": "Ours.", "log": pattern}
    path.write_text(yaml.safe_dump([{"id": "acme.fine", "category": "code", "hint": "Fine.",
                                     "log": "fine"}, rule]))
    return path


@pytest.mark.parametrize(("pattern", "why"), REFUSED, ids=[p[:20] for p, _ in REFUSED])
def test_a_rule_re2_refuses_is_named_with_the_reason(
    tmp_path: Path, pattern: str, why: str
) -> None:
    path = _user_rule(tmp_path, pattern)
    with pytest.raises(RulesError) as caught:
        load_file(path)
    message = str(caught.value)
    assert message == (
        f"{path}: rule 2 (acme.slow): 'log' is not a pattern the linear-time engine (RE2) can "
        f"run: {why} (see docs/cause-rules.md)"
    )
    with pytest.raises(SettingsError, match=r"^CAUSE_RULES_PATH: .*rule 2 \(acme\.slow\)"):
        load_settings(_env_file=None, cause_rules_path=str(path))


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?!x)deploy"])
def test_a_rule_re2_refuses_stops_ghapp_serve_with_one_line(tmp_path: Path, pattern: str) -> None:
    path = _user_rule(tmp_path, pattern)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CAUSE_RULES_PATH": str(path),
           "PYTHONPATH": str(Path(__file__).parent.parent), **serve_settings()}
    result = subprocess.run(
        [sys.executable, "-m", "ghapp", "serve"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"ghapp: CAUSE_RULES_PATH: {path}: rule 2 (acme.slow): 'log' ")
    assert "linear-time engine (RE2)" in result.stderr


def test_a_rule_that_is_no_regular_expression_at_all_says_so(tmp_path: Path) -> None:
    path = _user_rule(tmp_path, "(unclosed")
    with pytest.raises(RulesError, match=r"'log' is not a valid regular expression \(missing \)"):
        load_file(path)
