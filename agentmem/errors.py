"""One exception family. Each error carries a one-line message and, when useful, a hint."""

from __future__ import annotations

from dataclasses import dataclass


class AgentmemError(Exception):
    """Base error: a message for the user and an optional hint saying what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class Reported(AgentmemError):
    """A failure the command has already shown in its own output (a report's failed checks,
    say): the handler exits with the code and prints no `Error:` line of its own."""


class UsageError(AgentmemError):
    exit_code = 2


class NotFound(AgentmemError):
    pass


@dataclass(frozen=True)
class Problem:
    """One validation problem, reported as `file:line: what is wrong`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class InvalidAgent(AgentmemError):
    """The folder (or a proposed new content) does not validate."""

    def __init__(self, problems: list[Problem], hint: str | None = None) -> None:
        self.problems = problems
        super().__init__(
            "\n".join(str(p) for p in problems),
            hint or "fix the file(s) and try again; nothing was changed",
        )


class Conflict(AgentmemError):
    pass


class Locked(AgentmemError):
    pass


class ModelError(AgentmemError):
    """A provider failure, already translated into a human message."""

    def __init__(self, message: str, hint: str | None = None, *, retryable: bool = False,
                 kind: str = "error") -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.kind = kind


class Refused(AgentmemError):
    """A sleep pass or an edit refused by a guard."""
