from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("blame")(blame)


def blame(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    lesson: str = typer.Argument(..., help="Lesson id, e.g. L3."),
    json_: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show a lesson's evidence: the log events behind it, and the versions that changed it.

    Example: agentmem blame ./reviewer L3
    """
    from agentmem import console, report
    from agentmem.agent import Agent

    data = report.blame(Agent.open(agent), lesson)
    if json_:
        console.print_json(data)
        return
    o = console.out()
    flags = " (pinned)" if data["pinned"] else ""
    console.line((str(data["id"]), "bold"), f" {data['title']}{flags}  ",
                 (f"{data['file']}, helpful {data['helpful']}, harmful {data['harmful']}", "dim"))
    console.line(data["body"])
    o.print("\n[bold]evidence[/bold]")
    if not data["evidence"]:
        o.print("  (none recorded)")
    for event in data["evidence"]:
        if event.get("missing"):
            o.print(f"  {event['id']}  [red](not in log.jsonl)[/red]")
            continue
        text = str(event.get("content") or event.get("name") or "").replace("\n", " ")
        console.line(f"  {event['id']}  {event.get('time', '')[:19]}  {event.get('session', '')}  "
                     f"{event.get('kind')}: {text[:160]}")
    o.print("\n[bold]versions[/bold]")
    for v in data["versions"]:
        console.line(f"  {v['number']:>4} {v['commit'][:7]} {v['author']:<7} {v['subject']}")
