"""The command line: parses, dispatches, and turns errors into one-line messages."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from agentmem import __version__
from agentmem.commands import (
    batches,
    blame,
    chat,
    diff,
    eval,
    export,
    forget,
    history,
    import_,
    new,
    revert,
    show,
    sleep,
    sync,
    watch,
)
from agentmem.errors import AgentmemError, Reported


class _Group(TyperGroup):
    """Turns AgentmemError into `Error: message` + hint on stderr and its exit code (only the
    exit code for `Reported`, whose command has shown the failure already).

    This is the one place where failures become messages (works under CliRunner too).
    """

    def invoke(self, ctx: Any) -> Any:    # Any: typer's Context base lives in private typer._click
        try:
            return super().invoke(ctx)
        except AgentmemError as exc:
            if not isinstance(exc, Reported):
                from agentmem import console

                console.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("Interrupted.\n")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="agentmem",
    cls=_Group,
    rich_markup_mode=None,        # plain help: no rich import, so --help is instant
    help="LLM agents as plain-text folders that learn.\n\n"
         "An agent is a folder (persona.md, lessons.md, tools.yaml, log.jsonl) whose every "
         "change is a version you can diff and revert.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"agentmem {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """LLM agents as plain-text folders that learn."""


for module in (new, show, chat, sleep, watch, eval, blame, history, diff, revert, forget, batches,
               import_, export, sync):
    module.register(app)


def main() -> None:
    """The console script (and `python -m agentmem`). When this process is the agentmem command
    itself and the command imported litellm (a chat, a sleep), it ends without the
    interpreter's teardown, which there takes longer than the rest of a one-shot chat after its
    answer: everything that must last is on disk by then (log lines, memory files and versions
    are fsynced as they are written), so only stdout and stderr are flushed. Other commands,
    and a program or test that calls main(), end as usual (SystemExit)."""
    try:
        app()
    except SystemExit as exc:
        if "litellm" in sys.modules and _entry_point():
            _exit_now(exc.code)
        raise


def _entry_point() -> bool:
    """Whether the program running is the agentmem command, not one that imported main()."""
    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "agentmem.__main__")
    return os.path.basename(getattr(top, "__file__", None) or "") in ("agentmem", "agentmem.exe")


def _exit_now(code: object) -> None:
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:                            # sys.exit("text"): print it, as the interpreter would
        sys.stderr.write(f"{code}\n")
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):    # a closed pipe or stream: nothing more can be said
            status = status or 1
    os._exit(status)
