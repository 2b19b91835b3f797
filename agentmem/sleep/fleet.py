"""Sleep many agents at once: `agentmem sleep DIR --yes --jobs N`.

A pass mostly waits on the model, so passes run on threads, at most `jobs` of them waiting on
the model at once and one computing at a time (agentmem.baton). Past a few dozen agents the
work is spread over one process per core too, since parsing, checking and writing need CPU that
one Python process (one GIL) cannot give. Agents cross into those processes as folder strings,
and each pass's result comes back as a plain summary dict. One agent's failure is its own line
in the results and never stops the others.
"""

from __future__ import annotations

import gc
import os
import queue as queue_mod
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentmem import baton, llm
from agentmem.agent import Agent
from agentmem.errors import AgentmemError, ModelError
from agentmem.sleep.check import settings as check_settings
from agentmem.sleep.passes import prepare, run_pass

if TYPE_CHECKING:
    # for annotations only: concurrent.futures and multiprocessing cost ~10 ms to import, so
    # the functions that run a batch import them
    from concurrent.futures import Future
    from multiprocessing.queues import Queue

Summary = dict[str, Any]          # one agent's result: agent, ok, message, version, proposal, ...
Run = Callable[[Agent | str], Summary]
AGENTS_PER_PROCESS = 50           # fewer agents than this per core: threads in one process


def sleep_one(agent: Agent | str, model: str | None, apply_it: bool, max_cost: float | None,
              max_tokens: int | None, with_proposal: bool = True,
              on_retry: Callable[[ModelError, float], None] | None = None,
              repair: bool = True, check: bool = False,
              judge_model: str | None = None) -> Summary:
    """One agent's pass as a plain summary (it may cross a process boundary); its proposal
    (operations, usage, diff, the check's score) too, unless with_proposal=False. In a worker
    process the agent arrives as its folder, and is opened here. `check` (--check) turns the
    regression check on, as `sleep: check:` in the agent's persona.md does; `judge_model` is
    its --judge-model."""
    folder = agent if isinstance(agent, str) else str(agent.folder)
    summary: Summary = {"agent": folder, "ok": False, "message": "", "version": None,
                        "proposal": None, "warnings": []}
    try:
        if isinstance(agent, str):
            agent = Agent.open(agent)
        spec = prepare(agent, model)
        checking = check_settings(agent, spec, enabled=check, judge_model=judge_model)
        result = run_pass(agent, spec, apply_it=apply_it, max_cost=max_cost,
                          max_tokens=max_tokens, on_retry=on_retry, repair=repair, check=checking)
    except AgentmemError as exc:
        summary["message"] = exc.message
        return summary
    # Anything else (an OSError from a full disk, a bug tripped by one agent's odd files) is
    # reported on this agent's line: letting it escape would end the worker thread, or the
    # worker process, and with it every pass still to come in the batch. KeyboardInterrupt is
    # no Exception, and still stops the batch.
    except Exception as exc:  # noqa: BLE001 - one agent's failure must not stop the others
        summary["message"] = f"{type(exc).__name__}: {exc}"
        return summary
    summary.update(agent=str(agent.folder), ok=result.ok, message=result.message,
                   warnings=list(result.proposal.warnings) if result.proposal else [],
                   version=result.version.number if result.version else None,
                   proposal=result.proposal.to_json() if result.proposal and with_proposal
                   else None)
    return summary


def run_many(agents: list[Agent], *, jobs: int, on_result: Callable[[Summary], None],
             processes: int | None = None, **options: Any) -> list[Summary]:
    """Sleep many agents, with at most `jobs` waiting on the model at once, calling on_result
    with each summary as it comes; `options` are sleep_one's. On threads in this process, or,
    with at least AGENTS_PER_PROCESS agents for each, in up to `processes` processes (default:
    one per core)."""
    if not agents:
        return []
    if processes is None:
        processes = os.cpu_count() or 1
    processes = max(1, min(processes, jobs, max(1, len(agents) // AGENTS_PER_PROCESS)))
    if processes <= 1:
        return _in_threads(agents, jobs, on_result, options)
    return _in_processes([str(a.folder) for a in agents], jobs, processes, on_result, options)


def _threads_for(jobs: int) -> int:
    """A few threads more than model slots: while `jobs` threads wait on the model, the others
    read and write agents around their calls (one computes at a time, the rest wait on the
    disk), so a slot never waits for a pass's disk work. More would only add hand-offs."""
    return jobs + 4


def _passes(jobs: int, options: dict[str, Any], body: Callable[[Run], Any],
            threads: int) -> list[Any]:
    """Run `body(run)` on `threads` threads, where run(agent) sleeps one agent: one pass
    computes at a time (agentmem.baton), and at most `jobs` wait on the model at once."""
    from concurrent.futures import ThreadPoolExecutor

    computing, slots = threading.Lock(), threading.Semaphore(jobs)

    def run(agent: Agent | str) -> Summary:
        with baton.holding(computing, slots):
            return sleep_one(agent, **options)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda _: body(run), range(threads)))


def _in_threads(agents: list[Agent], jobs: int, on_result: Callable[[Summary], None],
                options: dict[str, Any]) -> list[Summary]:
    """run_many in this process: threads take agents from one queue until it is empty."""
    results: list[Summary] = []
    waiting: queue_mod.SimpleQueue[Agent] = queue_mod.SimpleQueue()
    lock = threading.Lock()
    for agent in agents:
        waiting.put(agent)

    def take(run: Run) -> None:
        while True:
            try:
                agent = waiting.get_nowait()
            except queue_mod.Empty:
                return
            summary = run(agent)
            with lock:
                results.append(summary)
                on_result(summary)

    _passes(jobs, options, take, threads=min(len(agents), _threads_for(jobs)))
    return results


# -- worker processes ------------------------------------------------------------------------
# Set in each worker process by its initializer: the queue of summaries back to the parent, and
# the queue of agent folders to sleep (a None stops one thread).
_progress: Queue[Summary] | None = None
_todo: Queue[str | None] | None = None


def _init_worker(progress: Queue[Summary], todo: Queue[str | None]) -> None:
    global _progress, _todo
    _progress, _todo = progress, todo


def _threaded(jobs: int, options: dict[str, Any]) -> int:
    """A worker process: threads take folders from the shared queue until a None; at most
    `jobs` of them wait on the model at once (see _passes)."""
    progress, todo = _progress, _todo
    assert progress is not None and todo is not None, "_init_worker sets them"

    def take(run: Run) -> int:
        done = 0
        while (folder := todo.get()) is not None:
            progress.put(run(folder))
            done += 1
        return done

    return sum(_passes(jobs, options, take, threads=_threads_for(jobs)))


def _in_processes(folders: list[str], jobs: int, processes: int,
                  on_result: Callable[[Summary], None], options: dict[str, Any]) -> list[Summary]:
    """run_many over `processes` forked workers, `jobs` model slots shared out among them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = [jobs // processes + (i < jobs % processes) for i in range(processes)]
    stops = sum(_threads_for(n) for n in threads)      # one None per worker thread
    context = multiprocessing.get_context("fork")
    # litellm is imported once, here, for all the workers: each would otherwise pay its import
    # (seconds of CPU, ~100 MB) at its first model call. Importing starts no thread.
    llm.litellm()
    # the workers share this process's memory (litellm alone is ~100 MB of objects) until they
    # write to it; the cyclic GC would walk, and so copy, all of it in every worker. No model
    # call may happen in this process before the fork: litellm logs calls on background
    # threads, and a fork while one of them holds an import lock leaves the workers hung.
    gc.freeze()
    try:
        done: Queue[Summary] = context.Queue()
        todo: Queue[str | None] = context.Queue()
        with ProcessPoolExecutor(max_workers=processes, mp_context=context,
                                 initializer=_init_worker, initargs=(done, todo)) as spread:
            workers = [spread.submit(_threaded, n, options) for n in threads]
            # filled once the workers exist (its feeder thread starts after the fork); folders
            # are taken as threads free up, so no worker idles while another has a backlog
            for folder in folders:
                todo.put(folder)
            for _ in range(stops):
                todo.put(None)                   # one stop for each worker thread
            try:
                return _collect(done, workers, len(folders), on_result)
            except BaseException:
                _abandon(todo, done, workers, stops)
                raise
    finally:
        gc.unfreeze()


def _collect(done: Queue[Summary], workers: list[Future[int]], count: int,
             on_result: Callable[[Summary], None]) -> list[Summary]:
    """The workers' `count` summaries, as they come; a worker's error is raised here."""
    results: list[Summary] = []
    while len(results) < count:
        try:
            summary = done.get(timeout=0.5)
        except queue_mod.Empty:
            failed = [w for w in workers if w.done() and w.exception() is not None]
            if failed:
                failed[0].result()       # re-raises the worker's error
            continue
        results.append(summary)
        on_result(summary)
    for worker in workers:
        worker.result()
    return results


def _abandon(todo: Queue[str | None], done: Queue[Summary], workers: list[Future[int]],
             stops: int) -> None:
    """After an error (or Ctrl-C): let the workers finish the passes under way and stop, and
    keep reading their results meanwhile, so no process waits forever on a full pipe."""
    while True:                   # no new agent is started
        try:
            todo.get_nowait()
        except queue_mod.Empty:
            break
    for _ in range(stops):
        todo.put(None)
    while not all(w.done() for w in workers):
        try:
            done.get(timeout=0.2)
        except queue_mod.Empty:
            pass
    todo.cancel_join_thread()
    done.cancel_join_thread()
