from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("sleep")(sleep)


def sleep(
    agents: list[str] = typer.Argument(..., help="Agent folders or names, or a folder of agents."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the proposal."),
    json_: bool = typer.Option(False, "--json", help="Print the proposal (and result) as JSON."),
    model: str = typer.Option(None, "--model", help="Sleep model (else sleep_model:, then model:)."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=256, help="Agents waiting on the model at once."),
    max_cost: float = typer.Option(None, "--max-cost", help="Refuse a pass estimated above this USD."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Refuse a pass estimated above this "
                                   "many tokens."),
) -> None:
    """Consolidate new experience into memory: small checked edits, reviewed before they apply.

    Examples: agentmem sleep ./reviewer; agentmem sleep ./reviewer --dry-run;
    agentmem sleep ./agents --yes --jobs 50 --max-cost 0.10
    """
    from agentmem.agent import Agent
    from agentmem.errors import UsageError

    found = expand(agents)
    if len(found) == 1:
        _one(found[0], yes, dry_run, json_, model, max_cost, max_tokens)
        return
    if not (yes or dry_run):
        raise UsageError(f"{len(found)} agents: add --yes to apply their passes, or --dry-run",
                         "review agents one at a time by naming one")
    _many([Agent.open(str(p)) for p in found], not dry_run, json_, model, jobs, max_cost, max_tokens)


def expand(specs: list[str]) -> list[Path]:
    from agentmem.agent import Agent
    from agentmem.errors import NotFound

    out: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "persona.md").exists():
            children = sorted(p for p in path.iterdir() if (p / "persona.md").is_file())
            if not children:
                raise NotFound(f"{path} holds no agent folders")
            out += children
        else:
            out.append(Agent.open(spec).folder)
    return list(dict.fromkeys(out))


def _is_tty() -> bool:
    return sys.stdin.isatty()


def _one(folder: Path, yes: bool, dry_run: bool, json_: bool, model: str | None,
         max_cost: float | None, max_tokens: int | None) -> None:
    from agentmem import console, models
    from agentmem import sleep as core
    from agentmem.agent import Agent

    agent = Agent.open(str(folder))
    spec = models.resolve(model, agent.load().persona.settings, sleep=True)
    models.check_key(spec)
    with _pass_lock(agent):
        proposal = core.propose(agent, spec, max_cost=max_cost, max_tokens=max_tokens,
                                on_retry=console.retrying)
        if proposal is None:
            if json_:
                console.print_json({"agent": str(agent.folder), "operations": [], "events": 0})
            console.info("nothing new since the last sleep")
            return
        for warning in proposal.warnings:
            console.warn(warning)
        if json_:
            data = proposal.to_json()
            if yes and not dry_run:
                version = core.apply(proposal)
                data["version"] = version.number if version else None
            console.print_json(data)
            return
        show(proposal)
        if dry_run:
            console.info("dry run: nothing was applied")
            return
        if not yes and not _is_tty():
            console.info("not applied: no terminal to ask on; run with --yes to apply")
            return
        selected = None if yes else _ask(proposal)
        if selected == []:
            console.info("discarded: nothing was written; these events will be offered again")
            return
        version = core.apply(proposal, selected)
        console.out().print(f"{version.number} {version.short} {version.subject}" if version
                            else "no change to memory; the cursor moved past these events")


def _pass_lock(agent: Any) -> Any:
    from contextlib import contextmanager

    from agentmem import sleep as core
    from agentmem.errors import Locked

    @contextmanager
    def held() -> Any:
        lock = core.sleep_lock(agent)
        try:
            lock.acquire()
        except Exception:
            raise Locked("a sleep pass is already running for this agent",
                         "wait for it to finish") from None
        try:
            yield
        finally:
            lock.release()

    return held()


def show(proposal: Any) -> None:
    from agentmem import console

    o = console.out()
    o.print(f"[bold]{proposal.agent.name}[/bold]: {len(proposal.operations)} operation(s) from "
            f"{proposal.events} new events · {proposal.prompt_tokens}+{proposal.completion_tokens} "
            f"tokens · ${proposal.cost:.4f}")
    if proposal.summary:
        o.print(proposal.summary)
    from agentmem.sleep import describe

    for n, op in enumerate(proposal.operations, 1):
        o.print(f"  {n}. {describe(op)}", markup=False)
    console.diff(proposal.diff())


def _ask(proposal: Any) -> list[int] | None:
    from agentmem import console
    from agentmem.sleep import describe

    while True:
        answer = input("apply all [a], review one by one [r], or discard [d]? ").strip().lower()
        if answer in ("a", "all"):
            return None
        if answer in ("d", "discard"):
            return []
        if answer in ("r", "review"):
            break
    selected = []
    for n, op in enumerate(proposal.operations):
        console.out().print(f"{n + 1}. {describe(op)}", markup=False)
        if input("   apply this one? [y/N] ").strip().lower() in ("y", "yes"):
            selected.append(n)
    return selected


def _many(agents: list[Any], apply_it: bool, json_: bool, model: str | None, jobs: int,
          max_cost: float | None, max_tokens: int | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agentmem import console
    from agentmem import sleep as core

    with Progress(TextColumn("sleeping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console.rich_console(stderr=True), transient=True) as progress:
        task = progress.add_task("sleep", total=len(agents))
        results = core.run_many([str(a.folder) for a in agents], jobs=jobs,
                                on_result=lambda _: progress.advance(task), model=model,
                                apply_it=apply_it, max_cost=max_cost, max_tokens=max_tokens,
                                with_proposal=json_)   # only --json prints them
    results.sort(key=lambda r: r["agent"])
    failed = [r for r in results if not r["ok"]]
    if json_:
        console.print_json(results)
    else:
        for r in results:
            mark = "[green]ok[/green]  " if r["ok"] else "[red]fail[/red]"
            console.out().print(f"{mark} {Path(r['agent']).name}: {r['message']}")
            for warning in r.get("warnings") or []:
                console.warn(f"{Path(r['agent']).name}: {warning}")
    console.info(f"{len(results) - len(failed)} of {len(results)} agents ok")
    if failed:
        raise SystemExit(1)


def interactive_sleep(session: Any) -> None:
    """/sleep inside a chat session: propose, show, ask."""
    from agentmem import console, models
    from agentmem import sleep as core

    agent = session.agent
    spec = models.resolve(None, agent.load().persona.settings, sleep=True)
    with _pass_lock(agent):
        proposal = core.propose(agent, spec, on_retry=console.retrying)
        if proposal is None:
            console.info("nothing new since the last sleep")
            return
        show(proposal)
        selected = _ask(proposal)
        if selected == []:
            console.info("discarded")
            return
        version = core.apply(proposal, selected)
        console.info(f"applied as version {version.number}" if version else "no change to memory")
