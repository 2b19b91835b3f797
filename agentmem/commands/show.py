from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("show")(show)


def show(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    json_: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarize an agent: files, tokens against budgets, lessons, versions, last sleep, and
    the most helpful and most harmful lessons by their /good and /bad counts.

    Example: agentmem show ./reviewer
    """
    from agentmem import console, report

    summary = report.summarize(agent)
    if json_:
        console.print_json(summary)
        return
    o = console.out()
    console.line((summary["name"], "bold"), f"  {summary['path']}")
    if summary["description"]:
        console.line(f"  {summary['description']}")
    console.line(f"  model        {summary['model'] or '(not set)'}"
                 + (f"   sleep model {summary['sleep_model']}" if summary["sleep_model"] else ""))
    for f in summary["files"]:
        budget = f" / {f['budget']} budget" if f.get("budget") else ""
        over = "  [red]over budget[/red]" if f.get("over_budget") else ""
        extra = f"  ({f['detail']})" if f.get("detail") else ""
        o.print(f"  {f['file']:<12} ~{f['tokens']} tokens{budget}{extra}{over}")
    log = summary["log"]
    o.print(f"  {'log.jsonl':<12} {log['events']} events, {log['since_sleep']} since last sleep")
    latest = summary["latest_version"]
    o.print(f"  {'versions':<12} {summary['versions']}"
            + (f" (latest #{latest['number']} {latest['commit'][:7]} {latest['author']}: "
               f"{latest['subject']})" if latest else ""))
    flagged = summary["after_untrusted"]
    if flagged:
        shown = ", ".join(f"v{n}" for n in flagged[-10:])
        more = f" (latest 10 of {len(flagged)})" if len(flagged) > 10 else ""
        o.print(f"  {'flagged':<12} [yellow]edits made after untrusted tool output: {shown}"
                f"[/yellow]{more} (review one: agentmem diff {summary['path']} N)")
    last = summary["last_sleep"]
    if last is None:
        slept = "never"
    elif last["version"]:
        slept = f"{last['ago']}, wrote version #{last['version']}"
    else:
        slept = f"{last['ago']}, nothing to change (memory at version #{last['at_version']})"
    o.print(f"  {'last sleep':<12} {slept}")
    for kind in ("helpful", "harmful"):
        for n, lesson in enumerate(summary["ratings"][kind]):
            title = lesson["title"] if len(lesson["title"]) <= 70 else lesson["title"][:69] + "…"
            console.line(f"  {'most ' + kind if n == 0 else '':<12} {lesson['id']} "
                         f"(helpful {lesson['helpful']}, harmful {lesson['harmful']}) {title}")
    if summary["uncommitted"]:
        console.warn("uncommitted hand edits in " + ", ".join(summary["uncommitted"])
                     + " (recorded as a human version on the next write)")
