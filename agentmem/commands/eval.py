from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from agentmem.evaluation import ScenarioResult


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)


def eval_(
    suite: Path = typer.Argument(None, help="A scenario file or a folder of them (default: "
                                 "./evals, else the suite installed with agentmem)."),
    model: str = typer.Option(None, "--model", help="Model for chat and sleep (any litellm model)."),
    judge_model: str = typer.Option(None, "--judge-model", help="Grade 'judge:' checks with this "
                                    "model (without one, such answers are not counted)."),
    offline: bool = typer.Option(False, "--offline", help="Use the scripted model: checks the "
                                 "machinery, not a model."),
    only: str = typer.Option(None, "--only", help="Run only scenarios whose name contains this."),
    json_: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Run the learning evaluation: agentmem vs no memory vs append-only, per scenario.

    Examples: agentmem eval evals --offline; agentmem eval evals --model openai/gpt-4.1-mini;
    agentmem eval evals/factual-correction.yaml --model ollama/llama3.2 --json
    """
    from agentmem import console, evaluation, models
    from agentmem import scenarios as scenarios_mod
    from agentmem.errors import AgentmemError, Reported, UsageError

    scenarios = scenarios_mod.load_suite(suite or scenarios_mod.default_suite())
    if only:
        scenarios = [s for s in scenarios if only in s.name]
        if not scenarios:
            raise UsageError(f"no scenario name contains {only!r}")
    if offline:
        if judge_model:
            raise UsageError("--offline grades 'judge:' checks with its scripted judge",
                             "drop --judge-model, or run a real model with --model")
        problems = scenarios_mod.offline_problems(scenarios)
        if problems:
            raise UsageError(problems[0], "or run it with a real model (--model)")
        spec = models.ModelSpec("scripted/eval", None, "--offline")
    else:
        try:
            spec = models.resolve(model, {})
        except AgentmemError as exc:      # no model configured, or an invalid config file
            raise UsageError("eval needs a model: pass --model (e.g. openai/gpt-4.1-mini) or "
                             "--offline for the scripted model") from exc
        models.check_key(spec)
    judge = models.resolve(judge_model, {}, flag_name="--judge-model") if judge_model else None
    if judge is not None:
        models.check_key(judge)
    if not offline:      # before anything is sent: every call goes to one of these two
        console.info(spec.describe("chat and sleep model"))
        if judge is not None:
            console.info(judge.describe("judge model"))
    runner = evaluation.Runner(spec, judge)
    results = []
    for scenario in scenarios:
        console.info(f"running {scenario.name} ...")
        results.append(runner.run(scenario))
    totals = evaluation.totals(results)
    if json_:
        console.print_json({"model": spec.model, "offline": runner.offline,
                            "note": evaluation.OFFLINE_NOTE if runner.offline else None,
                            "scenarios": [r.to_json() for r in results], "totals": totals})
    else:
        _table(results, totals, spec.model)
        if runner.offline:
            console.warn(evaluation.OFFLINE_NOTE)
    failed = totals["errors"] or (runner.offline and (
        totals["refused_passes"]
        or totals["agentmem"]["passed"] < totals["agentmem"]["total"]
        or totals["memory_checks"]["passed"] < totals["memory_checks"]["total"]))
    if failed:
        raise Reported("the evaluation failed: its report above says where")


def _table(results: list[ScenarioResult], totals: dict[str, Any], model: str) -> None:
    from agentmem import console

    o = console.out()
    width = max([len(r.name) for r in results] + [8])
    head = (f"{'scenario':<{width}}  {'agentmem':>8}  {'no-mem':>6}  {'append':>6}  "
            f"{'memory':>6}  {'tokens before→after':>19}  {'sleeps':>6}  {'cost':>8}")
    legend = ("probes passed per condition · memory checks passed · sleep passes applied/run")
    o.print(f"agentmem eval · {model}", markup=False)
    o.print(legend, markup=False)
    o.print(head, markup=False)

    def frac(pair: tuple[int, int]) -> str:
        return f"{pair[0]}/{pair[1]}"

    for r in results:
        if r.error:
            o.print(f"{r.name:<{width}}  error: {r.error}", markup=False)
            continue
        mem = f"{sum(ok for _, ok, _ in r.memory)}/{len(r.memory)}"
        sleeps = f"{r.sleeps - len(r.refused)}/{r.sleeps}"
        o.print(f"{r.name:<{width}}  {frac(r.passed('agentmem')):>8}  "
                f"{frac(r.passed('no_memory')):>6}  {frac(r.passed('append_only')):>6}  "
                f"{mem:>6}  {f'{r.tokens_before}→{r.tokens_after}':>19}  {sleeps:>6}  "
                f"{f'${r.cost:.4f}':>8}", markup=False)
    t = totals
    cells = [frac((t[c]["passed"], t[c]["total"])) for c in
             ("agentmem", "no_memory", "append_only", "memory_checks")]
    tokens = f"{t['memory_tokens']['before']}→{t['memory_tokens']['after']}"
    cost = f"${t['cost']:.4f}"
    sleeps = f"{t['sleeps'] - t['refused_passes']}/{t['sleeps']}"
    o.print(f"{'total':<{width}}  {cells[0]:>8}  {cells[1]:>6}  {cells[2]:>6}  {cells[3]:>6}  "
            f"{tokens:>19}  {sleeps:>6}  {cost:>8}",
            markup=False)
    def kind(name: str) -> str:
        row = {c: t[c][name] for c in ("agentmem", "no_memory", "append_only")}
        return (f"{row['agentmem']['passed']}/{row['agentmem']['total']} (no memory "
                f"{row['no_memory']['passed']}, append-only {row['append_only']['passed']})")

    o.print(f"corrections applied after sleep: {kind('correction')}; knowledge retained: "
            f"{kind('retention')}; canary retention {t['canary_retention']['kept']}/"
            f"{t['canary_retention']['total']}", markup=False)
    if t["judge_skipped"]:
        console.warn(f"{t['judge_skipped']} answer(s) not counted: their 'judge:' criterion was "
                     "not graded; pass --judge-model to grade them")
    for r in results:
        for p in r.probes:
            if not p.ok and p.condition == "agentmem":
                console.warn(f"{r.name}: probe {p.question!r} failed: {p.why}")
        for name, ok, detail in r.memory:
            if not ok:
                console.warn(f"{r.name}: memory check failed: {name} {detail}")
        for message in r.refused:
            said = "" if message.startswith("sleep pass refused") else "sleep pass refused: "
            console.warn(f"{r.name}: {said}{message}")
        if r.kept:
            console.warn(f"{r.name}: its agent folders are kept for inspection in {r.kept}")
