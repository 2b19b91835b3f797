"""Read-only views of an agent: summary, history, diffs. Returns data; never prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentmem.agent import Agent
from agentmem.errors import NotFound, UsageError
from agentmem.history import Version
from agentmem.timefmt import ago
from agentmem.tokens import estimate


def summarize(spec: str) -> dict[str, Any]:
    # here, not at the top: diff and history need no lesson parser
    from agentmem import ratings

    agent = Agent.open(spec)
    memory = agent.load()
    settings = memory.persona.settings
    budgets = memory.persona.budgets
    files: list[dict[str, Any]] = []
    for name, budget, detail in (
        ("persona.md", budgets["persona"], None),
        ("lessons.md", budgets["lessons"],
         f"{len(memory.lessons.lessons)} lessons, "
         f"{sum(lesson.pinned for lesson in memory.lessons.lessons)} pinned"),
        ("tools.yaml", None, f"{len(memory.tools)} tools"),
        ("archive.md", None, f"{len(memory.archive.lessons)} archived" if memory.archive else None),
    ):
        text = memory.texts.get(name)
        if text is None:
            continue
        tokens = estimate(memory.persona.body if name == "persona.md" else text)
        files.append({"file": name, "tokens": tokens, "budget": budget, "detail": detail,
                      "over_budget": bool(budget and tokens > budget)})
    latest = agent.history.latest()           # one commit read, not every version
    cursor = agent.sleep_cursor()
    last_event = agent.journal.last_event_number()
    slept = last_sleep(agent)
    return {
        "name": settings.get("name") or agent.name,
        "path": str(agent.folder),
        "description": settings.get("description", ""),
        "model": settings.get("model"),
        "sleep_model": settings.get("sleep_model"),
        "files": files,
        "lessons": len(memory.lessons.lessons),
        "ratings": ratings.top(memory.lessons),      # most helpful and most harmful lessons
        "log": {"events": last_event, "since_sleep": agent.journal.count_new(cursor)},
        "versions": latest.number if latest else 0,
        "latest_version": latest.to_json() if latest else None,
        "after_untrusted": agent.history.untrusted(),
        "last_sleep": slept,
        "uncommitted": agent.history.dirty(),
    }


def last_sleep(agent: Agent) -> dict[str, Any] | None:
    """The last sleep pass, one that changed nothing included: when (and how long ago), its
    version (None when it wrote none), how many operations, and `at_version`, the version
    memory was at when it ended. From state.json; an agent whose state predates that record
    falls back to its latest sleep version."""
    state = agent.read_state().get("last_sleep")
    if isinstance(state, dict) and state.get("time"):
        try:
            when = datetime.fromisoformat(state["time"])
        except (TypeError, ValueError):
            when = None
        if when is not None:
            at = state.get("at_version") or state.get("version")
            if not isinstance(at, int):
                at = agent.history.latest_number()
            return {"time": when.isoformat(), "ago": ago(when), "version": state.get("version"),
                    "operations": state.get("operations"), "at_version": at}
    latest = agent.history.last_by("sleep")
    if latest is None:
        return None
    return {"time": latest.time.isoformat(), "ago": ago(latest.time),
            "version": latest.number, "operations": None, "at_version": latest.number}


@dataclass
class DiffSpec:
    old: Version | None
    new: Version | None          # None: the files on disk (uncommitted hand edits)
    label: str


def pick_diff(agent: Agent, frm: str | None, to: str | None, since_sleep: bool) -> DiffSpec:
    history = agent.history
    latest = history.latest()
    if latest is None:
        raise NotFound("this agent has no versions yet")
    if since_sleep:
        if frm or to:
            raise UsageError("--since-sleep takes no versions")
        slept = last_sleep(agent)
        if slept is None:
            raise NotFound("this agent has never slept", "run: agentmem sleep AGENT")
        at = history.resolve(str(slept["at_version"]))
        new = None if history.dirty() else latest
        return DiffSpec(at, new, f"since the last sleep ({slept['ago']}, at version "
                                 f"{at.number}), to now")
    if frm and to:
        a, b = history.resolve(frm), history.resolve(to)
        return DiffSpec(a, b, f"version {a.number} to version {b.number}")
    if frm:
        v = history.resolve(frm)
        return DiffSpec(history.parent(v), v, f"version {v.number} ({v.author}): {v.subject}")
    if history.dirty():
        return DiffSpec(latest, None, "uncommitted hand edits")
    return DiffSpec(history.parent(latest), latest,
                    f"version {latest.number} ({latest.author}): {latest.subject}")


def diff_data(agent: Agent, spec: DiffSpec) -> dict[str, Any]:
    history = agent.history
    text = history.diff(spec.old, spec.new)
    files = []
    for name, patch in split_diff(text).items():
        lines = [line for line in patch.splitlines() if not line.startswith(("+++", "---"))]
        files.append({"file": name, "added": sum(line.startswith("+") for line in lines),
                      "removed": sum(line.startswith("-") for line in lines), "diff": patch})
    return {"from": spec.old.to_json() if spec.old else None,
            "to": spec.new.to_json() if spec.new else "working tree",
            "label": spec.label, "files": files, "diff": text}


def split_diff(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith("diff --git "):
            name = line.rstrip("\n").split(" b/", 1)[-1]
            current = out.setdefault(name, [])
        if current is not None:
            current.append(line)
    return {k: "".join(v) for k, v in out.items()}


def blame(agent: Agent, lesson_id: str) -> dict[str, Any]:
    """A lesson, the log events behind it, and the versions that touched it."""
    memory = agent.load()
    lesson, where = memory.lessons.get(lesson_id), "lessons.md"
    if lesson is None and memory.archive is not None:
        lesson, where = memory.archive.get(lesson_id), "archive.md"
    if lesson is None:
        known = ", ".join(x.id for x in memory.lessons.lessons if x.id) or "none"
        raise NotFound(f"no lesson '{lesson_id}' in lessons.md or archive.md",
                       f"lesson ids: {known}")
    events = agent.journal.find(lesson.evidence)
    log = agent.history.git("log", "--format=%H", "-G", f"id: {lesson_id}[;]", "--",
                            "lessons.md", "archive.md").stdout.split()
    by_commit = {v.commit: v for v in agent.history.versions()}
    return {"id": lesson.id, "title": lesson.title, "body": lesson.body, "file": where,
            "pinned": lesson.pinned, "helpful": lesson.helpful, "harmful": lesson.harmful,
            "evidence": [events.get(e, {"id": e, "missing": True}) for e in lesson.evidence],
            "versions": [by_commit[c].to_json() for c in log if c in by_commit]}
