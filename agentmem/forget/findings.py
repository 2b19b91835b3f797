"""What a survey found: every place the text occurs (never the text itself), listed for people
(`agentmem forget` prints it before asking) and as JSON (--json, and the receipt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentmem.journal import FILE as LOG_FILE


@dataclass
class Findings:
    """Every place it occurs. Never the text itself."""

    files: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # (line, pinned)
    events: list[str] = field(default_factory=list)          # log events (ids)
    log_lines: list[int] = field(default_factory=list)       # unreadable log lines
    versions: dict[int, list[str]] = field(default_factory=dict)   # version -> files
    messages: list[int] = field(default_factory=list)        # versions whose message quotes it
    other_refs: list[str] = field(default_factory=list)      # refs besides the agent's branch
    objects: int = 0              # git objects holding it
    unreachable: int = 0          # ... of those, in no version (old, or only in a reflog)
    reflog: int = 0               # reflog entries quoting it
    stored: list[str] = field(default_factory=list)   # agentmem's other files
    elsewhere: list[str] = field(default_factory=list)  # files agentmem does not manage

    @property
    def empty(self) -> bool:
        """Nothing agentmem keeps holds it (files it does not manage aside)."""
        return not (self.files or self.events or self.log_lines or self.versions or
                    self.messages or self.objects or self.reflog or self.stored)

    def pinned(self) -> list[str]:
        return [f"{name}:{line}" for name, lines in self.files.items()
                for line, pinned in lines if pinned]

    def places(self) -> list[str]:
        """One line per kind of place, for people."""
        out = [f"{name}: line {', '.join(str(n) + (' (pinned)' if p else '') for n, p in lines)}"
               for name, lines in self.files.items()]
        if self.events:
            out.append(f"{LOG_FILE}: event {', '.join(self.events)}")
        if self.log_lines:
            out.append(f"{LOG_FILE}: unreadable line {', '.join(map(str, self.log_lines))}")
        if self.versions:
            out.append("versions: " + ", ".join(
                f"{_ranges(numbers)} ({files})" for numbers, files in _runs(self.versions)))
        if self.messages:
            out.append(f"version messages: {_ranges(self.messages)}")
        if self.other_refs:
            out.append(f"other git refs: {', '.join(self.other_refs)}")
        if self.objects or self.reflog:
            git = [f"{self.objects} object(s)"] if self.objects else []
            if self.unreachable:
                git.append(f"{self.unreachable} of them in no version")
            if self.reflog:
                git.append(f"{self.reflog} reflog entr{'y' if self.reflog == 1 else 'ies'}")
            out.append(f"git: {', '.join(git)}")
        out += self.stored
        return out

    def to_json(self) -> dict[str, Any]:
        return {"files": {name: [{"line": n, "pinned": p} for n, p in lines]
                          for name, lines in self.files.items()},
                "events": self.events, "log_lines": self.log_lines,
                "versions": {str(n): files for n, files in sorted(self.versions.items())},
                "messages": sorted(self.messages), "other_refs": self.other_refs,
                "objects": self.objects, "unreachable_objects": self.unreachable,
                "reflog_entries": self.reflog, "stored": self.stored,
                "elsewhere": self.elsewhere}


def _runs(versions: dict[int, list[str]]) -> list[tuple[list[int], str]]:
    """Consecutive versions that held it in the same files, as one run each."""
    runs: list[tuple[list[int], str]] = []
    for number, files in sorted(versions.items()):
        names = ", ".join(files)
        if runs and runs[-1][1] == names and runs[-1][0][-1] == number - 1:
            runs[-1][0].append(number)
        else:
            runs.append(([number], names))
    return runs


def _ranges(numbers: list[int]) -> str:
    """3, 5-9, 12: sorted numbers with each run of consecutive ones as a range."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and out[-1][-1] == n - 1:
            out[-1].append(n)
        else:
            out.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in out)
