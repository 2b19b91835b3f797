from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("new")(new)


def new(
    name: str = typer.Argument(None, help="Folder path, or a bare name created under $AGENTMEM_HOME."),
    sample: str = typer.Option(None, "--from", help="Copy a sample agent (name or folder)."),
    list_: bool = typer.Option(False, "--list-samples", help="List the sample agents and exit."),
) -> None:
    """Create an agent folder and start its history.

    Example: agentmem new ./reviewer --from code-reviewer
    """
    from agentmem import console
    from agentmem.agent import Agent
    from agentmem.samples import list_samples

    if list_:
        for sample_name in list_samples():
            console.line(sample_name)
        return
    if not name:
        from agentmem.errors import UsageError

        raise UsageError("give the new agent's NAME (a folder path or a bare name)",
                         "example: agentmem new ./reviewer --from code-reviewer")
    agent = Agent.create(name, sample)
    console.line(str(agent.folder))      # literally: a path may hold [brackets]
    console.info(f"created {agent.name}" + (f" from sample '{sample}'" if sample else "")
                 + f"; chat with it: agentmem chat {agent.folder}")
