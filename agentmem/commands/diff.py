from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def diff(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    frm: str = typer.Argument(None, metavar="[FROM]",
                              help="A version: number, HEAD~N or short hash. Alone: its change."),
    to: str = typer.Argument(None, metavar="[TO]", help="Second version: diff FROM..TO."),
    since_sleep: bool = typer.Option(False, "--since-sleep",
                                     help="What changed since the last sleep pass ended."),
    stat: bool = typer.Option(False, "--stat", help="Lines added and removed per file."),
    json_: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
) -> None:
    """Show a change to memory as a diff. Default: the latest change (or your hand edits).

    Examples: agentmem diff ./reviewer; agentmem diff ./reviewer 3; agentmem diff ./reviewer 2 5;
    agentmem diff ./reviewer --since-sleep --stat
    """
    from agentmem import console, report
    from agentmem.agent import Agent

    a = Agent.open(agent)
    data = report.diff_data(a, report.pick_diff(a, frm, to, since_sleep))
    if json_:
        console.print_json(data)
        return
    console.info(data["label"])
    if stat:
        for f in data["files"]:
            console.out().print(f"{f['file']:<14} [green]+{f['added']}[/green] "
                                f"[red]-{f['removed']}[/red]")
        return
    if not data["diff"]:
        console.info("no changes")
    console.diff(data["diff"])
