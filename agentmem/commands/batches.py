"""`agentmem batches`, and the batch halves of `agentmem sleep` (--batch, --collect)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.models import ModelSpec
    from agentmem.sleep import Proposal


def register(app: typer.Typer) -> None:
    app.command("batches")(batches)


def batches(
    folder: str = typer.Argument(None, help="Only batches with agents in this folder."),
    json_: bool = typer.Option(False, "--json", help="Print the batches as JSON."),
) -> None:
    """List the sleep batches submitted with `sleep --batch`: status, counts and cost.

    A batch not yet finished is asked for its status. Example: agentmem batches ./agents
    """
    from agentmem import console
    from agentmem.sleep import batch as core

    found = core.listing(Path(folder).expanduser() if folder else None)
    if json_:
        console.print_json(found)
        return
    if not found:
        console.info("no batches submitted" + (f" for agents in {folder}" if folder else ""))
        return
    for b in found:
        counts = b.get("request_counts") or {}
        cost = (f"${b['cost']:.4f}" if b.get("cost") is not None else
                f"~${b['estimate']:.4f} estimated" if b.get("estimate") is not None else "$?")
        collected = (f", collected: {b.get('applied', 0)} applied, {b.get('refused', 0)} refused"
                     if b.get("collected") else "")
        console.line((str(b["id"]), "bold"), f"  {b.get('created', '')}  ",
                     (f"{b.get('status')}", "cyan"),
                     f"  {b['agents']} agent(s), {counts.get('completed', 0)} completed, "
                     f"{counts.get('failed', 0)} failed of {counts.get('total', 0)}  {cost}  "
                     f"{b.get('model')}{collected}")
        if b.get("unreachable"):
            console.warn(f"{b['id']}: status as last seen; asking again failed: "
                         f"{b['unreachable']}")


def submit(agents: list[Agent], model: str | None, max_cost: float | None, json_: bool) -> None:
    """sleep --batch: one batch per sleep model (a batch holds one model's requests)."""
    from agentmem import console
    from agentmem import sleep as passes
    from agentmem.sleep import batch as core

    groups: dict[ModelSpec, list[Agent]] = {}
    for agent in agents:
        spec = passes.prepare(agent, model)
        core.check_usable(spec)
        groups.setdefault(spec, []).append(agent)
    out: list[dict[str, Any]] = []
    for spec, members in groups.items():
        console.info(spec.describe("sleep model"))
        done = core.submit(members, spec, max_cost=max_cost)
        for folder, why in done.skipped:
            console.info(f"{Path(folder).name}: not submitted: {why}")
        record = done.batch
        out.append({"batch": record["id"] if record else None, "model": spec.model,
                    "agents": done.agents, "estimate": done.estimate,
                    "skipped": [{"agent": f, "reason": r} for f, r in done.skipped]})
        if record and not json_:
            cost = f"~${done.estimate:.4f} at batch prices" if done.estimate is not None else \
                "no price known"
            console.line(f"submitted batch {record['id']}: {len(done.agents)} agent(s), {cost}; "
                         "collect with: agentmem sleep DIR --collect --yes")
        elif not record and not json_:
            console.info("nothing to submit")
    if json_:
        console.print_json(out)


def collect(agents: list[Agent], yes: bool, json_: bool, check: bool = False,
            judge_model: str | None = None, jobs: int = 1,
            max_cost: float | None = None) -> None:
    """sleep --collect: apply the answers that came back, through a live pass's guards (and
    the regression check, with --check or persona.md's `sleep: check:`, refused over
    --max-cost with the answer's cost)."""
    from agentmem import console
    from agentmem.errors import AgentmemError, UsageError
    from agentmem.sleep import batch as core

    found = core.survey(agents)
    if not found:
        if json_:
            console.print_json([])
        console.info("no batch is pending for these agents")
        return
    waiting = core.ready(found)
    review = None
    if waiting and not yes:       # as `sleep` does: one agent is reviewed, many need --yes
        if len(agents) > 1:
            raise UsageError(f"{waiting} agent(s) have batch results to collect: add --yes to "
                             "apply them (each answer goes through the guards of a live pass)",
                             "review one agent's answer by naming it")
        if json_ or not console.stdin_is_tty():     # --json is for programs: never asks
            if json_:
                console.print_json([])
            console.info("not applied: " + ("--json never asks" if json_ else
                                            "no terminal to ask on") + "; run with --yes to apply")
            return
        review = _review
    results = [r.to_json() for r in core.collect(found, jobs=jobs, check=check,
                                                  judge_model=judge_model,
                                                  on_retry=console.retrying, review=review,
                                                  max_cost=max_cost)]
    results.sort(key=lambda r: r["agent"])
    if json_:
        console.print_json(results)
    else:
        marks = {"applied": ("ok  ", "green"), "already": ("ok  ", "green"),
                 "pending": ("wait", "yellow"), "discarded": ("skip", "yellow")}
        for r in results:
            console.line(marks.get(r["status"], ("fail", "red")), f" {Path(r['agent']).name}: ",
                         r["message"])
            for warning in r["warnings"]:
                console.warn(f"{Path(r['agent']).name}: {warning}")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise AgentmemError(f"{len(failed)} of {len(results)} agents were not applied; "
                            f"{len(results) - len(failed)} ok",
                            "a refused or failed agent is submitted again by sleep --batch "
                            "(one whose batch could not be asked is still awaited)")
    console.info(f"{len(results)} of {len(results)} agents ok")


def _review(proposal: Proposal) -> list[int] | None:
    """One agent's batch answer shown as a live proposal is, and asked about on the terminal."""
    from agentmem import console
    from agentmem.commands import sleep

    if proposal.check is not None:        # the regression check's score, as a live pass shows it
        console.info(proposal.check.line())
    for warning in proposal.warnings:
        console.warn(warning)
    sleep.show(proposal)
    return sleep._ask(proposal)
