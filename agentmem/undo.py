"""Undo: revert one version's change (keeping every later one), or restore a whole state."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from agentmem.errors import AgentmemError, Conflict, UsageError
from agentmem.history import Version
from agentmem.memory import ARCHIVE

if TYPE_CHECKING:
    from agentmem.agent import Agent


def revert(agent: Agent, ref: str) -> Version:
    """Undo exactly one version's change, keeping every later change."""
    found: list[Version] = []

    def compute(current: dict[str, str | None]) -> dict[str, str | None]:
        found[:] = [agent.history.resolve(ref)]     # after hand edits are recorded
        return _undo_changes(agent, found[0], current)

    version = agent.update(compute, "revert",
                          lambda: f"Revert version {found[0].number}: {found[0].subject}")
    if version is None:
        raise UsageError(f"version {found[0].number}'s change is already undone; nothing to do")
    return version

def _undo_changes(agent: Agent, target: Version,
                  current: dict[str, str | None]) -> dict[str, str | None]:
    parent = agent.history.parent(target)
    if parent is None:
        raise UsageError(f"version {target.number} created the agent; it cannot be undone",
                         "use 'agentmem revert AGENT --to VERSION' to restore a state")
    changes: dict[str, str | None] = {}
    for name in agent.history.changed_files(target):
        base = agent.history.file_at(target, name)
        other = agent.history.file_at(parent, name)
        now = current.get(name)
        if now == other:
            continue                      # already as it was before that version
        if base is None or other is None:  # the version added or deleted the file
            if now != base:
                raise _conflict(name)
            changes[name] = other
            continue
        try:
            changes[name] = merge3(now or "", base, other, name)
        except Conflict:
            from agentmem import lessons as lessons_fmt

            merged = (lessons_fmt.undo_change(now or "", base, other)
                      if name in ("lessons.md", ARCHIVE) else None)
            if merged is None:
                raise
            changes[name] = merged
        if name in ("lessons.md", ARCHIVE):
            _check_undone(target, name, base, other, changes.get(name, now))
    return changes

def restore(agent: Agent, ref: str) -> Version:
    """Make the whole memory as it was at a version, recorded as a new version."""
    found: list[Version] = []

    def compute(_current: dict[str, str | None]) -> dict[str, str | None]:
        found[:] = [agent.history.resolve(ref)]
        return dict(agent.history.files_at(found[0]))

    version = agent.update(compute, "revert", lambda: f"Restore memory as of version "
                          f"{found[0].number}: {found[0].subject}")
    if version is None:
        raise UsageError(f"memory is already as it was at version {found[0].number}")
    return version


def _check_undone(target: Version, name: str, base: str | None, other: str | None,
                  result: str | None) -> None:
    """A revert undoes a version's whole change or nothing: every lesson the version added
    must be gone from the result and every lesson it removed back (by title and text)."""
    from agentmem import lessons as lessons_fmt

    def contents(text: str | None) -> set[str]:
        doc = lessons_fmt.parse(text or "", name)[0]
        return {f"{x.title}\n{x.body.strip()}" for x in doc.lessons} if doc else set()

    before, after, now = contents(other), contents(base), contents(result)
    kept = (after - before) & now
    missing = (before - after) - now
    if kept or missing:
        title = next(iter(kept or missing)).split("\n")[0]
        raise Conflict(f"{name}: version {target.number}'s change to the lesson '{title}' cannot be "
                       "undone on its own (it was changed again since); nothing was changed",
                       "edit the file by hand, or use 'agentmem revert AGENT --to VERSION' to "
                       "restore a whole earlier state")


def _conflict(name: str) -> AgentmemError:
    return Conflict(f"{name}: later edits changed this file, so this version cannot be undone on "
                    "its own; nothing was changed",
                    "use 'agentmem revert AGENT --to VERSION' to restore a whole earlier state")


def merge3(current: str, base: str, other: str, name: str) -> str:
    """Three-way merge with git merge-file; raises Conflict when the changes overlap."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for label, text in (("current", current), ("base", base), ("other", other)):
            path = Path(tmp) / label
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        proc = subprocess.run(["git", "merge-file", "-p", "-q", *paths], capture_output=True,
                              text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise Conflict(f"{name}: later edits changed the same lines, so this version cannot be "
                       "undone on its own; nothing was changed",
                       "use 'agentmem revert AGENT --to VERSION' to restore a whole earlier state, "
                       "or edit the file by hand")
    return proc.stdout
