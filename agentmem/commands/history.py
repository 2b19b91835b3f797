from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("history")(history)


def history(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    limit: int = typer.Option(0, "--limit", "-n", help="Show at most this many versions."),
    json_: bool = typer.Option(False, "--json", help="Print versions as JSON."),
) -> None:
    """List versions of the agent's memory, newest first.

    Example: agentmem history ./reviewer -n 10
    """
    from agentmem import console
    from agentmem.agent import Agent
    from agentmem.timefmt import ago

    a = Agent.open(agent)
    versions = a.history.versions(limit if limit > 0 else None)   # reads only those shown
    dirty = a.history.dirty()
    if json_:
        console.print_json({"uncommitted": dirty, "versions": [v.to_json() for v in versions]})
        return
    if dirty:
        console.line(("   *", "yellow"), f" {'':7}  {'now':<16} {'human':<7} uncommitted hand edits: "
                     + ", ".join(dirty))
    for v in versions:          # the subject may be a model's text: shown literally
        console.line((f"{v.number:>4}", "bold"), " ", (v.short, "yellow"), f"  {ago(v.time):<16} ",
                     (f"{v.author:<7}", "cyan"), " ", v.subject)
