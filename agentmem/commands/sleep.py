from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.chat import ChatSession
    from agentmem.sleep import Proposal
    from agentmem.sleep.check import Settings as CheckSettings


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
    no_repair: bool = typer.Option(False, "--no-repair", help="Refuse an answer of the wrong "
                                   "form at once, without sending it back to be fixed."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Refuse a pass estimated above this "
                                   "many tokens."),
    check: bool = typer.Option(False, "--check", help="Replay recent turns with the current and "
                               "the proposed memory, have a judge compare them, and refuse a "
                               "pass that makes answers worse."),
    judge_model: str = typer.Option(None, "--judge-model", help="The check's judge (else the "
                                    "persona's check judge:, then the sleep model)."),
    batch: bool = typer.Option(False, "--batch", help="Submit the passes as one provider batch "
                               "(about half price, answered within 24 h); see --collect."),
    collect: bool = typer.Option(False, "--collect", help="Apply the answers of submitted "
                                 "batches that came back (needs --yes to apply)."),
) -> None:
    """Consolidate new experience into memory: small checked edits, reviewed before they apply.

    Examples: agentmem sleep ./reviewer; agentmem sleep ./reviewer --dry-run;
    agentmem sleep ./agents --yes --jobs 50 --max-cost 0.10; agentmem sleep ./reviewer --check --yes
    agentmem sleep ./agents --batch; agentmem sleep ./agents --collect --yes
    """
    from agentmem.errors import UsageError

    found = open_agents(agents)
    if judge_model and not check:       # fine where persona.md turns the check on
        from agentmem.sleep import check as checking

        if all(checking.setting(a.load().persona.settings) is None for a in found):
            raise UsageError("--judge-model is the regression check's judge", "add --check")
    if batch or collect:
        from agentmem.commands import batches

        if batch and collect:
            raise UsageError("--batch submits and --collect collects: use one at a time",
                             "submit with --batch, later apply with --collect --yes")
        if batch and check:
            raise UsageError("the regression check runs when the answers are applied",
                             "give --check to sleep --collect")
        if dry_run:         # --batch would submit (and pay for) a batch, --collect apply it
            raise UsageError("--dry-run does not combine with --batch or --collect",
                             "see a pass without writing anything with: agentmem sleep AGENT "
                             "--dry-run; review one agent's batch answer with: agentmem sleep "
                             "AGENT --collect")
        if max_tokens is not None:
            raise UsageError("--max-tokens does not combine with --batch or --collect",
                             "cap a batch with --max-cost (checked at batch prices)")
        if batch:
            batches.submit(found, model, max_cost, json_)
        else:
            batches.collect(found, yes, json_, check, judge_model, jobs, max_cost)
        return
    if len(found) == 1:
        _one(found[0], yes, dry_run, json_, model, max_cost, max_tokens, not no_repair,
             check=check, judge_model=judge_model)
        return
    if not (yes or dry_run):
        raise UsageError(f"{len(found)} agents: add --yes to apply their passes, or --dry-run",
                         "review agents one at a time by naming one")
    _many(found, not dry_run, json_, model, jobs, max_cost, max_tokens, not no_repair,
          check=check, judge_model=judge_model)


def open_agents(specs: list[str]) -> list[Agent]:
    """The agents `specs` name (folders, names, or folders of agent folders), each opened once,
    in order, each once however often it is named."""
    from agentmem.agent import Agent
    from agentmem.errors import NotFound

    found: dict[Path, Agent] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "persona.md").exists():
            children = sorted(p for p in path.iterdir() if (p / "persona.md").is_file())
            if not children:
                raise NotFound(f"{path} holds no agent folders")
            opened = [Agent.open(child) for child in children]
        else:
            opened = [Agent.open(spec)]
        for agent in opened:
            found.setdefault(agent.folder, agent)
    return list(found.values())


def _one(agent: Agent, yes: bool, dry_run: bool, json_: bool, model: str | None,
         max_cost: float | None, max_tokens: int | None, repair: bool, *, check: bool = False,
         judge_model: str | None = None) -> None:
    from agentmem import console
    from agentmem import sleep as core
    from agentmem.sleep import check as checking
    from agentmem.sleep.batch import PENDING

    spec = core.prepare(agent, model)
    console.info(spec.describe("sleep model"))
    waiting = agent.read_state().get("batch")
    if isinstance(waiting, dict) and waiting.get("status") == PENDING:
        console.warn(f"batch {waiting.get('id')} holds a pass over these events, not yet "
                     "collected: a pass now makes its answer stale (refused at --collect, "
                     "though paid for); collect it with: agentmem sleep AGENT --collect")
    settings = checking.settings(agent, spec, enabled=check, judge_model=judge_model)
    _say_check(settings)
    with agent.sleep_lock():
        if settings is not None:
            checking.precheck(agent, spec, settings, max_cost)
        proposal = core.propose(agent, spec, max_cost=max_cost, max_tokens=max_tokens,
                                on_retry=console.retrying, repair=repair)
        if proposal is None:
            if json_:
                console.print_json({"agent": str(agent.folder), "operations": [], "events": 0})
            console.info("nothing new since the last sleep")
            return
        if settings is not None:
            _verify(proposal, settings, max_cost, json_)
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
        if not yes and not console.stdin_is_tty():
            console.info("not applied: no terminal to ask on; run with --yes to apply")
            return
        selected = None if yes else _ask(proposal)
        if selected == []:
            console.info("discarded: nothing was written; these events will be offered again")
            return
        version = core.apply(proposal, selected)
        if version:
            console.line(f"{version.number} {version.short} ", version.subject)
        else:
            console.line("no change to memory; the cursor moved past these events")


def _say_check(settings: CheckSettings | None) -> None:
    """Which models the regression check will use, before anything is sent."""
    from agentmem import console

    if settings is not None:
        console.info(settings.replay.describe("check replay model"))
        console.info(settings.judge.describe("check judge"))


def _verify(proposal: Proposal, settings: CheckSettings, max_cost: float | None,
            json_: bool) -> None:
    """The regression check on a proposal; its score is shown, and with --json a refused
    proposal is printed (with the score) before the one error line."""
    from agentmem import console
    from agentmem.errors import Refused
    from agentmem.sleep import check as checking

    try:
        report = checking.verify(proposal, settings, on_retry=console.retrying,
                                 max_cost=max_cost)
    except Refused:
        if json_ and proposal.check is not None:
            console.print_json({**proposal.to_json(), "version": None, "refused": True})
        raise
    console.info(report.line())


def show(proposal: Proposal) -> None:
    from agentmem import console
    from agentmem.sleep import describe

    console.line((proposal.agent.name, "bold"), f": {len(proposal.operations)} operation(s) from "
                 f"{proposal.events} new events · {proposal.prompt_tokens}+"
                 f"{proposal.completion_tokens} tokens · ${proposal.cost:.4f}")
    if proposal.summary:
        console.line(proposal.summary)
    for n, op in enumerate(proposal.operations, 1):
        console.line(f"  {n}. ", console.literal(describe(op)))
    console.diff(proposal.diff())


def _ask(proposal: Proposal) -> list[int] | None:
    """All (None), none ([]) or the operations a person picks one by one, asked on stdin."""
    from agentmem import console
    from agentmem.sleep import describe

    while True:
        answer = (console.ask("apply all [a], review one by one [r], or discard [d]? ") or "d")
        answer = answer.strip().lower()       # end of input (Ctrl-D): discard
        if answer in ("a", "all"):
            return None
        if answer in ("d", "discard"):
            return []
        if answer in ("r", "review"):
            break
    selected = []
    for n, op in enumerate(proposal.operations):
        console.line(f"{n + 1}. ", console.literal(describe(op)))
        if (console.ask("   apply this one? [y/N] ") or "").strip().lower() in ("y", "yes"):
            selected.append(n)
    return selected


def _many(agents: list[Agent], apply_it: bool, json_: bool, model: str | None, jobs: int,
          max_cost: float | None, max_tokens: int | None, repair: bool, *, check: bool = False,
          judge_model: str | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agentmem import console
    from agentmem import sleep as core
    from agentmem.errors import AgentmemError

    with Progress(TextColumn("sleeping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console.rich_console(stderr=True), transient=True) as progress:
        task = progress.add_task("sleep", total=len(agents))
        results = core.run_many(agents, jobs=jobs, on_result=lambda _: progress.advance(task),
                                model=model, apply_it=apply_it, max_cost=max_cost,
                                max_tokens=max_tokens, with_proposal=json_,   # only --json prints them
                                on_retry=console.retrying, repair=repair, check=check,
                                judge_model=judge_model)
    results.sort(key=lambda r: r["agent"])
    failed = [r for r in results if not r["ok"]]
    if json_:
        console.print_json(results)
    else:
        for r in results:
            mark = ("ok  ", "green") if r["ok"] else ("fail", "red")
            console.line(mark, f" {Path(r['agent']).name}: ", r["message"])
            for warning in r.get("warnings") or []:
                console.warn(f"{Path(r['agent']).name}: {warning}")
    if failed:      # each failure is on its own line above
        raise AgentmemError(f"{len(failed)} of {len(results)} agents failed; "
                            f"{len(results) - len(failed)} ok")
    console.info(f"{len(results)} of {len(results)} agents ok")


def interactive_sleep(session: ChatSession) -> None:
    """/sleep inside a chat session: propose, show, ask."""
    from agentmem import console
    from agentmem import sleep as core

    agent = session.agent
    spec = core.prepare(agent, None, fallback=session.spec)   # never a provider it did not choose
    console.info(spec.describe("sleep model"))
    from agentmem.sleep import check as checking

    settings = checking.settings(agent, spec)     # only when persona.md turns the check on
    _say_check(settings)
    with agent.sleep_lock():
        proposal = core.propose(agent, spec, on_retry=console.retrying)
        if proposal is None:
            console.info("nothing new since the last sleep")
            return
        if settings is not None:
            _verify(proposal, settings, None, False)
        show(proposal)
        selected = _ask(proposal)
        if selected == []:
            console.info("discarded")
            return
        version = core.apply(proposal, selected)
        console.info(f"applied as version {version.number}" if version else "no change to memory")
