from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)


def sync(
    agent: str = typer.Argument(..., help="Agent folder or name (a new folder: copy the "
                                          "remote's agent into it)."),
    remote: str = typer.Argument(None, help="Git remote: a path or URL (default: 'remote:' in "
                                            "persona.md)."),
    remote_opt: str = typer.Option(None, "--remote", help="The same as REMOTE."),
    json_: bool = typer.Option(False, "--json", help="Print what happened as JSON."),
) -> None:
    """Push and pull the agent's versions and log through a git remote (never a force-push).

    Both machines' changes are merged file by file; a real conflict changes nothing.
    Examples: agentmem sync ./reviewer ~/sync/reviewer.git;
    agentmem sync ./reviewer (with 'remote:' in persona.md);
    agentmem sync ~/agents/reviewer git@example.com:me/reviewer.git (copy to a new machine)
    """
    from pathlib import Path

    from agentmem import config, console
    from agentmem import sync as core
    from agentmem.agent import Agent
    from agentmem.errors import UsageError

    if remote and remote_opt and remote != remote_opt:
        raise UsageError("give the remote once: as REMOTE or as --remote")
    given = remote or remote_opt
    # as Agent.open finds it: a path, or a bare name under $AGENTMEM_HOME, where a copy goes
    places = [Path(agent).expanduser()]
    if "/" not in agent and not agent.startswith("."):
        places.append(config.agents_home() / agent)
    found = next((p for p in places if (p / "persona.md").is_file()), None)
    folder = found or places[-1]
    if found is None:
        if not given:
            raise UsageError(f"{folder} is not an agent folder; to copy an agent into it, give "
                             "the remote", "example: agentmem sync ./reviewer ~/sync/reviewer.git")
        outcome = core.clone(folder, core.remotes.resolve(given, Path.cwd()))
    else:
        a = Agent.open(found)
        outcome = core.sync(a, core.remote_for(a, given))
    if json_:
        console.print_json(outcome.to_json())
        return
    if outcome.pulled == "clone":
        version = outcome.version
        console.line(f"copied {outcome.remote} into {folder}: version "
                     f"{version.number if version else 0}, {outcome.events_in} events")
        return
    pulled = {"nothing": "nothing new there", "fast-forward": "took the remote's versions",
              "merge": "merged both sides"}[outcome.pulled]
    if outcome.version is not None:
        pulled += f" (now at version {outcome.version.number} {outcome.version.short})"
    console.line(f"{outcome.remote}: {pulled}; {outcome.events_in} events arrived; "
                 + (f"pushed ({outcome.events_out} events the remote lacked)" if outcome.pushed
                    else "nothing to push"))
    for old, new in outcome.renumbered.items():
        console.line(f"lesson {old} added here is now {new} (the remote had given {old} to "
                     "another lesson)")
