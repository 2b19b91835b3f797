from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("revert")(revert)


def revert(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    version: str = typer.Argument(None, help="The version whose change to undo."),
    to: str = typer.Option(None, "--to", help="Restore the whole memory as it was at VERSION."),
) -> None:
    """Undo one version's change, keeping every later change (recorded as a new version).

    Examples: agentmem revert ./reviewer 7; agentmem revert ./reviewer HEAD;
    agentmem revert ./reviewer --to 3
    """
    from agentmem import console
    from agentmem.agent import Agent
    from agentmem.errors import UsageError

    if bool(version) == bool(to):
        raise UsageError("give either a VERSION to undo or --to VERSION to restore",
                         "example: agentmem revert ./reviewer 7")
    a = Agent.open(agent)
    result = a.restore(to) if to else a.revert(version)
    console.line(f"{result.number} {result.short} ", result.subject)
