"""Eval scenarios: the YAML files under evals/, loaded and checked whole before anything runs.

A scenario has a persona, sessions in which a simulated user makes requests and corrects or
confirms the answers, then probes with checks on the answers and on memory (see evals/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentmem.errors import UsageError
from agentmem.persona import BUDGET_KEYS


# -- scenarios ---------------------------------------------------------------------------
@dataclass
class Check:
    contains: list[str] = field(default_factory=list)
    not_contains: list[str] = field(default_factory=list)
    regex: str | None = None
    judge: str | None = None

    def evaluate(self, text: str, judge: Any = None) -> tuple[bool, str]:
        """(passed, why). A judge criterion needs `judge(criterion, text) -> bool`; without one
        it is not graded, and `why` says "judge skipped" (see ProbeResult.judge_skipped)."""
        low = text.lower()
        for word in self.contains:
            if word.lower() not in low:
                return False, f"missing {word!r}"
        for word in self.not_contains:
            if word.lower() in low:
                return False, f"contains {word!r}"
        if self.regex and not re.search(self.regex, text, re.I | re.M):
            return False, f"does not match /{self.regex}/"
        if self.judge:
            if judge is None:
                return True, JUDGE_SKIPPED
            if not judge(self.judge, text):
                return False, f"judge: not '{self.judge}'"
        return True, "ok"


JUDGE_SKIPPED = "other checks passed; the judge criterion was not graded (no --judge-model)"


@dataclass
class Scenario:
    name: str
    description: str
    path: Path
    data: dict[str, Any]

    @property
    def sessions(self) -> list[dict[str, Any]]:
        return list(self.data.get("sessions") or [])

    @property
    def probes(self) -> list[dict[str, Any]]:
        return list(self.data.get("probes") or [])


SCENARIO_KEYS = {"name", "description", "persona", "lessons", "budgets", "canary", "sessions",
                 "sleep_every", "probes", "memory", "scripted_sleeps", "sleep_check",
                 "sleep_repair"}
TURN_KEYS = {"user", "reply", "feedback", "rating", "agent_edit"}
PROBE_KEYS = {"user", "expect", "learned_reply", "unlearned_reply", "marker", "kind"}
EXPECT_KEYS = ("contains", "not_contains", "regex", "judge")
PROBE_KINDS = ("correction", "retention")
OFFLINE_KEYS = ("marker", "learned_reply", "unlearned_reply")
MEMORY_WORDS = ("contains", "not_contains", "persona_contains", "archived")
MEMORY_FLAGS = ("canary_survives", "no_duplicates", "unchanged")
MEMORY_KEYS = {*MEMORY_WORDS, *MEMORY_FLAGS, "max_lessons_tokens"}
# sleep --check in a scenario: its settings, whether the check must refuse the passes, and
# (offline) how the scripted agent answers a replayed request (see OFFLINE_KEYS)
SLEEP_CHECK_KEYS = ("turns", "margin", "must_refuse", *OFFLINE_KEYS)
# the repair round in a scenario (eval's passes have none otherwise): offline, the sleep model's
# first answer, of the wrong form (the first scripted_sleeps entry is its answer when told why),
# and whether a repair round must have saved a pass
SLEEP_REPAIR_KEYS = ("first_answer", "must_repair")


def load_suite(path: Path) -> list[Scenario]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"no scenarios (*.yaml) in {path}")
    return [load_scenario(f) for f in files]


def default_suite() -> Path:
    """./evals when there is one (a clone of the repository), else the suite installed with
    agentmem."""
    local = Path("evals")
    package = Path(__file__).resolve().parent
    for candidate in (local, package / "evals", package.parent / "evals"):   # last: a clone
        if candidate.is_dir():
            return candidate
    return local


def load_scenario(path: Path) -> Scenario:
    """A scenario file, checked whole: a wrong key or type is one UsageError naming the file
    and the place, before anything runs."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such scenario: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder: give a scenario file or a folder of *.yaml") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UsageError(f"{where}: invalid YAML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a scenario is a mapping (name, persona, sessions, probes, ...)")
    _Validator(path).scenario(data)
    return Scenario(data["name"], data.get("description") or "", path, data)


class _Validator:
    """The scenario format's types, each failure one line: FILE: WHERE: WHAT."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def bad(self, what: str) -> UsageError:
        return UsageError(f"{self.path}: {what}", "see evals/README.md for the scenario format")

    def mapping(self, value: Any, where: str, keys: set[str] | tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad(f"{where} must be a mapping ({', '.join(sorted(keys))})")
        unknown = set(value) - set(keys)
        if unknown:
            raise self.bad(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                           f"(allowed: {', '.join(sorted(keys))})")
        return value

    def listing(self, value: Any, where: str) -> list[Any]:
        """A list; a key left empty (null) is an empty one."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.bad(f"{where} must be a list")
        return value

    def text(self, value: Any, where: str, *, required: bool = False) -> None:
        if value is None and not required:
            return
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.bad(f"{where} must be {'non-empty ' if required else ''}text")

    def words(self, value: Any, where: str) -> None:
        """Text, or a list of texts (whole numbers are read as text; 3.10 would read as 3.1,
        so other numbers must be quoted)."""
        items = value if isinstance(value, list) else [value]
        if not items or not all((isinstance(v, str) and v.strip()) or (
                isinstance(v, int) and not isinstance(v, bool)) for v in items):
            raise self.bad(f"{where} must be text or a list of texts (quote numbers like "
                           "\"3.10\")")

    def count(self, value: Any, where: str, *, least: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise self.bad(f"{where} must be a whole number >= {least}")

    def scenario(self, data: dict[str, Any]) -> None:
        unknown = set(data) - SCENARIO_KEYS
        if unknown:
            raise self.bad(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        for key in ("name", "persona"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise self.bad(f"'{key}' is required text")
        for key in ("description", "lessons"):
            self.text(data.get(key), f"'{key}'")
        if data.get("budgets") is not None:
            for key, value in self.mapping(data["budgets"], "'budgets'", BUDGET_KEYS).items():
                self.count(value, f"budgets: {key}", least=1)
        if data.get("canary") is not None:
            canary = self.mapping(data["canary"], "'canary'", ("title", "body"))
            for key in ("title", "body"):
                self.text(canary.get(key), f"canary: {key}", required=True)
        if data.get("sleep_every") is not None:
            self.count(data["sleep_every"], "'sleep_every'", least=0)
        for n, session in enumerate(self.listing(data.get("sessions"), "'sessions'"), 1):
            turns = session.get("turns") if isinstance(session, dict) else None
            if not isinstance(turns, list) or not turns:
                raise self.bad(f"session {n} needs a non-empty 'turns' list")
            self.mapping(session, f"session {n}", ("turns",))
            for m, turn in enumerate(turns, 1):
                self.turn(turn, f"session {n}, turn {m}")
        for n, ops in enumerate(self.listing(data.get("scripted_sleeps"), "'scripted_sleeps'"), 1):
            self.mapping(ops, f"scripted_sleeps {n}", ("operations", "summary"))
            self.listing(ops.get("operations"), f"scripted_sleeps {n}: operations")
        probes = data.get("probes")
        if not isinstance(probes, list) or not probes:
            raise self.bad("'probes' must list at least one probe")
        for n, probe in enumerate(probes, 1):
            self.probe(probe, f"probe {n}")
        if data.get("memory") is not None:
            self.memory(self.mapping(data["memory"], "'memory'", MEMORY_KEYS), "memory")
        if data.get("sleep_check") is not None:
            self.sleep_check(self.mapping(data["sleep_check"], "'sleep_check'",
                                          SLEEP_CHECK_KEYS))
        if "sleep_repair" in data:
            repair = self.mapping(data["sleep_repair"], "'sleep_repair'", SLEEP_REPAIR_KEYS)
            self.text(repair.get("first_answer"), "sleep_repair: first_answer",
                      required="first_answer" in repair)
            if repair.get("must_repair") is not None and not isinstance(repair["must_repair"],
                                                                        bool):
                raise self.bad("sleep_repair: must_repair is true or false")

    def sleep_check(self, check: dict[str, Any]) -> None:
        if check.get("turns") is not None:
            self.count(check["turns"], "sleep_check: turns", least=1)
        if check.get("margin") is not None:
            self.count(check["margin"], "sleep_check: margin", least=0)
        if check.get("must_refuse") is not None and not isinstance(check["must_refuse"], bool):
            raise self.bad("sleep_check: must_refuse is true or false")
        given = [key for key in OFFLINE_KEYS if key in check]
        if given and len(given) < len(OFFLINE_KEYS):
            raise self.bad(f"sleep_check: {', '.join(OFFLINE_KEYS)} go together (the offline "
                           "answers to a replayed request)")
        for key in given:
            self.text(check[key], f"sleep_check: {key}", required=True)

    def turn(self, turn: Any, where: str) -> None:
        if not isinstance(turn, dict) or set(turn) - TURN_KEYS or not (
                "user" in turn or "feedback" in turn or "rating" in turn):
            raise self.bad(f"{where}: a turn has user (and reply), or feedback/rating; "
                           f"allowed keys: {', '.join(sorted(TURN_KEYS))}")
        self.text(turn.get("user"), f"{where}: user", required="user" in turn)
        for key in ("reply", "feedback"):
            self.text(turn.get(key), f"{where}: {key}")
        if turn.get("rating") not in (None, "good", "bad"):
            raise self.bad(f"{where}: rating is good or bad")
        if turn.get("agent_edit") is not None:
            if "user" not in turn:
                raise self.bad(f"{where}: agent_edit needs the user message it answers")
            edit = self.mapping(turn["agent_edit"], f"{where}: agent_edit",
                                ("title", "body", "reason"))
            for key in ("title", "body"):
                self.text(edit.get(key), f"{where}: agent_edit: {key}", required=True)
            self.text(edit.get("reason"), f"{where}: agent_edit: reason")

    def probe(self, probe: Any, where: str) -> None:
        if not isinstance(probe, dict) or set(probe) - PROBE_KEYS or "user" not in probe \
                or not isinstance(probe.get("expect"), dict):
            raise self.bad(f"{where} needs 'user' and 'expect' (contains, not_contains, regex, "
                           "judge)")
        self.text(probe["user"], f"{where}: user", required=True)
        expect = self.mapping(probe["expect"], f"{where}: expect", EXPECT_KEYS)
        if not any(expect.get(key) not in (None, "", []) for key in EXPECT_KEYS):
            raise self.bad(f"{where}: expect checks nothing (give contains, not_contains, regex "
                           "or judge)")
        for key in ("contains", "not_contains"):
            if expect.get(key) is not None:
                self.words(expect[key], f"{where}: expect: {key}")
        if expect.get("regex") is not None:
            self.text(expect["regex"], f"{where}: expect: regex", required=True)
            try:
                re.compile(expect["regex"])
            except re.error as exc:
                raise self.bad(f"{where}: expect: regex /{expect['regex']}/ is invalid ({exc})") \
                    from None
        self.text(expect.get("judge"), f"{where}: expect: judge", required="judge" in expect
                  and expect["judge"] is not None)
        if probe.get("kind") not in (None, *PROBE_KINDS):
            raise self.bad(f"{where}: kind is {' or '.join(PROBE_KINDS)}")
        given = [key for key in OFFLINE_KEYS if key in probe]
        if given and len(given) < len(OFFLINE_KEYS):
            raise self.bad(f"{where}: {', '.join(OFFLINE_KEYS)} go together (the offline answers)")
        for key in given:
            self.text(probe[key], f"{where}: {key}", required=True)

    def memory(self, checks: dict[str, Any], where: str) -> None:
        for key in MEMORY_WORDS:
            if checks.get(key) is not None:
                self.words(checks[key], f"{where}: {key}")
        for key in MEMORY_FLAGS:
            if checks.get(key) is not None and not isinstance(checks[key], bool):
                raise self.bad(f"{where}: {key} is true or false")
        if checks.get("max_lessons_tokens") is not None:
            self.count(checks["max_lessons_tokens"], f"{where}: max_lessons_tokens", least=1)


def offline_problems(scenarios: list[Scenario]) -> list[str]:
    """Probes an offline run cannot answer: the scripted model needs each one's marker and
    its learned and unlearned replies (and a sleep_check's, for the requests it replays)."""
    return [f"{s.path}: probe {n} needs {', '.join(OFFLINE_KEYS)} for --offline"
            for s in scenarios for n, probe in enumerate(s.probes, 1)
            if not all(key in probe for key in OFFLINE_KEYS)] + [
        f"{s.path}: sleep_check needs {', '.join(OFFLINE_KEYS)} for --offline"
        for s in scenarios if s.data.get("sleep_check") is not None
        and not all(key in s.data["sleep_check"] for key in OFFLINE_KEYS)] + [
        f"{s.path}: sleep_repair needs first_answer for --offline"
        for s in scenarios if "sleep_repair" in s.data
        and "first_answer" not in s.data["sleep_repair"]]


def _check(expect: dict[str, Any]) -> Check:
    return Check(listed(expect.get("contains")), listed(expect.get("not_contains")),
                 expect.get("regex") or None, expect.get("judge") or None)


def listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
