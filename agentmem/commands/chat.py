from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from agentmem.chat import Approver, ChatSession
    from agentmem.history import Version
    from agentmem.memory_tool import PendingEdit
    from agentmem.tooldefs import ToolDef

HELP = """\
/help              this help
/exit              end the session (Ctrl-D works too; Ctrl-C cancels a reply)
/diff              the latest change to memory
/undo              undo the agent's last memory edit in this session
/sleep             run a sleep pass now (shows the proposal and asks)
/feedback TEXT     tell the agent something about its last answer (logged for sleep)
/good, /bad [TEXT] rate the last answer; counts for the lessons it rests on"""


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)


def chat(
    agent: str = typer.Argument(..., help="Agent folder or name."),
    message: str = typer.Option(None, "--message", "-m", help="Ask once, print the answer, exit."),
    model: str = typer.Option(None, "--model", help="litellm model string or alias."),
    json_: bool = typer.Option(False, "--json", help="With -m or piped input: answer and usage as JSON."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run the agent's tools, and make its "
                             "persona.md edits that follow tool output, without asking."),
) -> None:
    """Talk to an agent. It may edit its own memory; every edit is a version you can revert.

    Examples: agentmem chat ./reviewer; agentmem chat ./reviewer -m "Review this diff" ;
    git diff | agentmem chat ./reviewer --json
    """
    from agentmem import console, models
    from agentmem.agent import Agent
    from agentmem.chat import ChatSession

    a = Agent.open(agent)
    memory = a.load()
    spec = models.resolve(model, memory.persona.settings)
    models.check_key(spec)
    interactive = message is None and console.stdin_is_tty()
    if interactive:
        from agentmem import llm

        llm.preload()       # the import costs seconds: start it while the user types
    confirm = _allow if yes else _ask_confirm_edit if interactive else None
    session = ChatSession(a, spec, approve=_ask_approval if interactive else _refuser(),
                          allow_all_tools=yes, confirm_edit=confirm)
    with session:
        if interactive:
            _repl(session)
        else:
            text = message if message is not None else sys.stdin.read()
            if not text.strip():
                from agentmem.errors import UsageError

                raise UsageError("nothing to send: give -m TEXT or pipe text on stdin")
            _once(session, text, json_)


def _once(session: ChatSession, text: str, json_: bool) -> None:
    from agentmem import console

    if json_:
        result = session.send(text, on_retry=console.retrying)
    else:
        with console.ReplyStream() as reply:
            result = session.send(text, on_text=reply.write, on_retry=console.retrying)
    for warning in result.warnings:
        console.warn(warning)
    if json_:
        console.print_json(result.to_json())
    for version in result.memory_versions:
        console.info(f"memory: version {version.number} by the agent: {version.subject} "
                     f"(undo: agentmem revert {session.agent.folder} {version.number})"
                     + _flag(version))
    for edit in result.refused_edits:
        console.warn(f"the agent's {edit.path} edit was refused: it came after output from "
                     f"{edit.source}, so a person must confirm it (allow it with --yes)")


def _flag(version: Version) -> str:
    from agentmem.history import after_untrusted

    return "; made after untrusted tool output, review it" if after_untrusted(version.message) \
        else ""


def _allow(edit: PendingEdit) -> bool:
    return True


def _yes(prompt: str) -> bool:
    from agentmem import console

    answer = console.ask(prompt)
    return answer is not None and answer.strip().lower() in ("y", "yes")


def _ask_confirm_edit(edit: PendingEdit) -> bool:
    """Show a persona.md edit that follows untrusted tool output, literally, and ask."""
    from agentmem import console

    console.line((f"edit {edit.path}", "yellow"), f" after output from {edit.source} "
                 "(untrusted: it may carry injected instructions)", stderr=True)
    if edit.reason:
        console.line("reason: ", console.literal(edit.reason), stderr=True)
    console.diff(edit.diff, stderr=True)
    return _yes("allow? [y/N] ")


def _ask_approval(tool: ToolDef, args: dict[str, Any]) -> bool:
    """Show the exact argument list the tool would run with (each argument literal, quoted as a
    shell would need it) and ask."""
    import shlex

    from agentmem import console
    from agentmem.toolrun import build_argv

    try:
        argv = build_argv(tool, args)
    except ValueError:
        return True     # let the runner report the argument error to the model
    console.line(("run tool", "yellow"), f" {console.literal(tool.name)}: ",
                 shlex.join(console.literal(arg) for arg in argv), stderr=True)
    return _yes("allow? [y/N] ")


def _refuser() -> Approver:
    """Without a person to ask (-m, piped input): refuse each tool that asks first, and say so
    on stderr once per tool, with how to allow it."""
    told: set[str] = set()

    def refuse(tool: ToolDef, args: dict[str, Any]) -> bool:
        from agentmem import console

        if tool.name not in told:
            told.add(tool.name)
            console.warn(f"the agent's call to {tool.name} was refused: the tool asks a person "
                         "first, and chat with -m or piped input does not ask (allow it with "
                         f"--yes, or add {tool.name} to allow_tools: in persona.md)")
        return False

    return refuse


def _repl(session: ChatSession) -> None:
    from agentmem import console
    from agentmem.errors import AgentmemError

    err = console.err()
    settings = session.memory.persona.settings
    console.line((str(settings.get("name") or session.agent.name), "bold"),
                 f" · {session.spec.model} · /help for commands, Ctrl-D to exit", stderr=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            err.print()
            return
        except KeyboardInterrupt:
            err.print()
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if _slash(session, text) == "exit":
                return
            continue
        try:
            _reply(session, text)
        except KeyboardInterrupt:
            console.info("(reply cancelled)")
        except AgentmemError as exc:
            console.error(exc.message, exc.hint)


def _reply(session: ChatSession, text: str) -> None:
    from agentmem import console

    with console.ReplyStream() as reply:
        result = session.send(text, on_text=reply.write, on_tool=_show_tool,
                              on_retry=console.retrying)
    for warning in result.warnings:
        console.warn(warning)
    for version in result.memory_versions:
        console.info(f"memory: version {version.number}: {version.subject} (/undo to revert)"
                     + _flag(version))


def _rate(session: ChatSession, rating: str, text: str) -> None:
    from agentmem import console
    from agentmem.errors import AgentmemError

    try:
        counted = session.rate(rating, text)
    except AgentmemError as exc:
        console.error(exc.message, exc.hint)
        return
    if counted is None:
        console.warn(f"usage: /{rating} [TEXT] after a reply, to rate it (no reply yet)")
        return
    console.info(f"rated the last answer {rating}")
    if counted.again:
        console.info(f"this reply was rated {counted.again} already; no lesson counted again")
    elif counted.lessons:
        console.info(f"{counted.counter} +1 for " + ", ".join(counted.ids)
                     + (f" (version {counted.version.number})" if counted.version else ""))
    elif not counted.gone:
        console.info("no lesson counted: the agent edited none in that turn, and none shown "
                     "shares enough distinctive words with it")
    if counted.gone:
        console.info("not counted, no longer in lessons.md: " + ", ".join(counted.gone))


def _show_tool(name: str, output: str) -> None:
    from agentmem import console

    first = output.strip().split("\n")[0]
    console.info(f"[{name}] {console.literal(first[:120])}")


def _slash(session: ChatSession, text: str) -> str | None:
    from agentmem import console, report

    command, _, rest = text.partition(" ")
    rest = rest.strip()
    if command in ("/exit", "/quit"):
        return "exit"
    if command == "/help":
        console.err().print(HELP)
    elif command == "/diff":
        data = report.diff_data(session.agent, report.pick_diff(session.agent, None, None, False))
        console.info(data["label"])
        console.diff(data["diff"])
    elif command == "/undo":
        version = session.undo()
        console.info(f"undone as version {version.number}" if version
                     else "the agent made no memory edit in this session")
    elif command == "/feedback":
        if not rest:
            console.warn("usage: /feedback TEXT")
        else:
            session.feedback(None, rest)
            console.info("feedback logged; the next sleep pass will weigh it")
    elif command in ("/good", "/bad"):
        _rate(session, command[1:], rest)
    elif command == "/sleep":
        from agentmem.commands.sleep import interactive_sleep

        interactive_sleep(session)
    else:
        console.warn(f"unknown command {command}; /help lists them")
    return None
