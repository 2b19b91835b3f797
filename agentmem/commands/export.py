from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    fmt: str = typer.Option(..., "--format", "-f",
                            help="agents-md, claude-md (one Markdown file for a coding agent), af "
                                 "(a Letta agent file, v2 layout) or finetune (OpenAI chat "
                                 "fine-tuning JSONL)."),
    output: str = typer.Option(None, "--output", "-o",
                               help="Write to this file (atomically) instead of stdout."),
    max_tokens: int = typer.Option(None, "--max-tokens",
                                   help="agents-md/claude-md: at most this many tokens; the "
                                        "lowest-rated lessons are left out to fit."),
    min_rating: str = typer.Option(None, "--min-rating",
                                   help="finetune: 'good' learns only from replies not rated "
                                        "/bad (those stay as context with weight 0)."),
    skip_reverted: bool = typer.Option(False, "--skip-reverted",
                                       help="finetune: leave out sessions whose memory edits "
                                            "were later reverted."),
) -> None:
    """Export an agent for another tool: AGENTS.md, CLAUDE.md, a Letta agent file, or a
    fine-tuning set.

    Example: agentmem export ./reviewer --format agents-md -o AGENTS.md
    Example: agentmem export ./reviewer --format finetune --min-rating good -o train.jsonl
    """
    from agentmem import console
    from agentmem.agent import Agent
    from agentmem.portable.exporting import export_agent

    exported = export_agent(Agent.open(agent), fmt, max_tokens=max_tokens, min_rating=min_rating,
                            skip_reverted=skip_reverted, output=output)
    for note in exported.notes:
        console.info(note)
    if output:
        console.info(f"wrote {output}")
    else:
        console.out().print(exported.text, end="", markup=False)
