from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("import")(import_)


def import_(
    file: str = typer.Argument(..., help="A Letta agent file (.af) or a Markdown instruction "
                                         "file (AGENTS.md, CLAUDE.md, ...)."),
    dest: str = typer.Argument(None, help="The new agent's folder (a path, or a bare name under "
                                          "$AGENTMEM_HOME); default: the agent's name there."),
    as_: str = typer.Option("lessons", "--as", help="Markdown only: 'lessons' (headings become "
                                                    "lessons, the text before them the persona) "
                                                    "or 'persona' (the whole file)."),
) -> None:
    """Create an agent folder from a Letta agent file or a Markdown instruction file.

    The first version is authored `import`; its message lists what was left out and why
    (agentmem history shows it).

    Example: agentmem import ./evie.af ./evie
    Example: agentmem import ./AGENTS.md ./repo-agent --as persona
    """
    from agentmem import console
    from agentmem.portable.importer import import_file

    agent, imported = import_file(file, dest, shape=as_)
    console.line(str(agent.folder))      # literally: a path may hold [brackets]
    console.info(f"imported {imported.name}: {len(imported.lessons)} lessons, "
                 f"{len(imported.events)} log events"
                 + (f"; skipped {len(imported.skipped)} items (agentmem history "
                    f"{agent.folder} shows them)" if imported.skipped else "")
                 + f"; chat with it: agentmem chat {agent.folder}")
