from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch(
    agents: list[str] = typer.Argument(..., help="Agent folders or names, or a folder of agents."),
    model: str = typer.Option(None, "--model", help="Sleep model for background passes."),
    idle_minutes: float = typer.Option(None, "--idle-minutes", help="Sleep an agent idle this "
                                       "long (default: persona.md sleep.idle_minutes, or 30)."),
    min_events: int = typer.Option(None, "--min-events", help="...with at least this many new "
                                   "events (default: sleep.min_events, or 20)."),
    no_sleep: bool = typer.Option(False, "--no-sleep", help="Only record hand edits."),
    poll: bool = typer.Option(False, "--poll", help="Poll the files (network drives, containers)."),
) -> None:
    """Record hand edits as versions as they happen, and sleep idle agents in the background.

    Examples: agentmem watch ./reviewer; agentmem watch ./agents --idle-minutes 10;
    agentmem watch ./reviewer --no-sleep
    """
    import signal
    from datetime import datetime

    from agentmem import console
    from agentmem.commands.sleep import open_agents
    from agentmem.watcher import Watcher, WatchEvent

    found = open_agents(agents)

    def emit(event: WatchEvent) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        style = {"recorded": "green", "settled": "green", "sleep": "cyan",
                 "invalid": "yellow", "warning": "yellow"}.get(event.kind, "red")
        console.line((stamp, "dim"), " ", (event.agent.name, "bold"), " ", (event.kind, style),
                     " ", event.message, stderr=True)
        if event.diff:
            console.diff(event.diff)

    watcher = Watcher(found, emit, model=model, idle_minutes=idle_minutes, min_events=min_events,
                      auto_sleep=not no_sleep, force_polling=poll or None)
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    console.info(f"watching {len(found)} agent(s); Ctrl-C to stop")
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()
    console.info("stopped")
