from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from agentmem.forget import Findings, Target


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)


def forget(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    text: str = typer.Argument(None, help="The text to forget, as written ('-': read it from "
                               "stdin, so it stays out of your shell's history)."),
    regex: bool = typer.Option(False, "--regex", help="TEXT is a regular expression (Python "
                               "syntax; ^ and $ match at each line)."),
    ignore_case: bool = typer.Option(False, "--ignore-case", "-i", help="Match TEXT in any case."),
    lesson: str = typer.Option(None, "--lesson", help="Forget a whole lesson (e.g. L7): its "
                               "section in every version, and quotes of its title and text."),
    secrets: bool = typer.Option(False, "--secrets", help="Forget every secret the redactor "
                                 "recognises now, in the whole history and log."),
    include_pinned: bool = typer.Option(False, "--include-pinned", help="Also forget it inside "
                                        "pinned (human-owned) text."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Forget without asking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list where it occurs."),
    json_: bool = typer.Option(False, "--json", help="Print the places (and the receipt) as "
                               "JSON."),
) -> None:
    """Remove a text from memory, the log and every past version, and keep a receipt.

    Lists every place it occurs first, and changes nothing without a yes (asked on a
    terminal, else --yes). The old versions are rewritten, keeping their numbers, authors
    and dates; this cannot be undone. Copies outside the folder are not reached.

    Examples: agentmem forget ./reviewer 'Jane Doe' --dry-run;
    agentmem forget ./reviewer 'Jane Doe' --yes; agentmem forget ./reviewer --lesson L7;
    agentmem forget ./reviewer --secrets --yes
    """
    from agentmem import console
    from agentmem import forget as core
    from agentmem.agent import Agent
    from agentmem.errors import UsageError

    target = _target(text, regex, ignore_case, lesson, secrets)
    a = Agent.open(agent)
    survey = core.survey(a, target, include_pinned=include_pinned)
    found = survey.findings
    if json_ and (dry_run or found.empty or not yes or survey.refusal):
        console.print_json({"agent": str(a.folder), "found": found.to_json(), "changed": False})
    elif not json_:
        _show(a.name, found)
    if found.empty:
        console.info("it occurs nowhere agentmem keeps; nothing to forget")
        return
    if survey.refusal is not None:
        raise survey.refusal
    if dry_run:
        console.info("dry run: nothing was changed")
        return
    if not yes:
        if not console.stdin_is_tty():
            raise UsageError("nothing was changed: forget rewrites the history and cannot be "
                             "undone, so it asks first, and there is no terminal to ask on",
                             "check the places listed, then run the same command with --yes")
        if not typer.confirm("Forget it in every place above? Old versions are rewritten; "
                             "this cannot be undone", default=False, err=True):
            console.info("nothing was changed")
            return
    receipt = core.forget(a, target, include_pinned=include_pinned)
    if receipt is None:                 # gone meanwhile
        console.info("it occurs nowhere agentmem keeps any more; nothing to forget")
        return
    if json_:
        console.print_json({"agent": str(a.folder), "found": found.to_json(), "changed": True,
                            "receipt": receipt.to_json()})
    else:
        version = receipt.data.get("version")
        console.line(f"forgot {receipt.name}" + (f" (version {version})" if version else "")
                     + f"; receipt: {receipt.path}")
    for note in receipt.data.get("notes") or []:
        console.warn(note)
    for place in receipt.remaining:
        console.warn(f"still there: {place}")
    if found.elsewhere:
        console.warn(f"left alone, as agentmem does not manage them: {', '.join(found.elsewhere)}")
    console.info("copies outside this folder (clones of .agentmem/git, backups, a repository "
                 "that tracks these files, the model provider's logs) still hold it")
    if receipt.remaining:
        from agentmem.errors import AgentmemError

        raise AgentmemError(f"{receipt.name} left it in {len(receipt.remaining)} place(s) "
                            "listed above", "see the receipt's notes, then run forget again")


def _target(text: str | None, regex: bool, ignore_case: bool, lesson: str | None,
            secrets: bool) -> Target:
    from agentmem import forget as core
    from agentmem.errors import UsageError

    if sum((text is not None, lesson is not None, secrets)) != 1:
        raise UsageError("give one of: TEXT, --lesson ID or --secrets",
                         "example: agentmem forget ./reviewer 'Jane Doe' --dry-run")
    if (regex or ignore_case) and text is None:
        raise UsageError("--regex and --ignore-case go with a TEXT")
    if lesson is not None:
        return core.lesson_target(lesson)
    if secrets:
        return core.secrets_target()
    assert text is not None
    if text == "-":
        text = sys.stdin.read().removesuffix("\n")
    return core.text_target(text, regex=regex, ignore_case=ignore_case)


def _show(name: str, found: Findings) -> None:
    from agentmem import console

    o = console.out()
    places = found.places()
    if places:
        o.print(f"[bold]{name}[/bold]: it occurs in")
        for place in places:
            o.print(f"  {place}", markup=False)
    if found.elsewhere:
        o.print("also in files agentmem does not manage (forget leaves them alone):")
        for path in found.elsewhere:
            o.print(f"  {path}", markup=False)
