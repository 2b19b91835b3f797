from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from agentmem.agent import Agent
from agentmem.watcher import Watcher, WatchEvent, classify, relevant


def test_relevant_ignores_debris_history_and_other_files(tmp_path: Path):
    root = tmp_path / "a"
    roots = [root]
    assert relevant(str(root / "lessons.md"), roots)
    assert relevant(str(root / "persona.md"), roots)
    assert relevant(str(root / "log.jsonl"), roots)
    for name in ("lessons.md~", ".lessons.md.swp", ".#lessons.md", "4913", "lessons.md.tmp",
                 ".lessons.md.x.agentmem.tmp", "notes.txt", "#lessons.md#"):
        assert not relevant(str(root / name), roots), name
    assert not relevant(str(root / ".agentmem" / "git" / "lessons.md"), roots)
    assert not relevant(str(root / "sub" / "lessons.md"), roots)


def test_classify_none_own_invalid_hand(blank: Agent):
    assert classify(blank).kind == "none"
    path = blank.folder / "lessons.md"
    # an agentmem write in flight: announced in intent.json, matched by content
    import hashlib

    text = path.read_text() + "\n## Own\nwritten by agentmem\n"
    (blank.state_dir / "intent.json").write_text(json.dumps(
        {"author": "agent", "message": "m",
         "files": {"lessons.md": hashlib.sha256(text.encode()).hexdigest()}}))
    path.write_text(text)
    assert classify(blank).kind == "own"
    # the same file with one more byte is a person's edit
    path.write_text(text + "x\n")
    assert classify(blank).kind == "hand"
    (blank.state_dir / "intent.json").unlink()
    (blank.folder / "tools.yaml").write_text("tools: [\n")
    found = classify(blank)
    assert found.kind == "invalid" and str(found.problems[0]).startswith("tools.yaml:")


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_real_watcher_thread(blank: Agent, model):
    """Editor-style save, an own write, an invalid edit and an idle-triggered sleep."""
    events: list[WatchEvent] = []
    watcher = Watcher([blank], events.append, model="scripted/sleep", idle_minutes=0,
                      min_events=3, force_polling=True, poll_delay_ms=50, debounce_ms=100,
                      tick_ms=200)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(timeout=20)
        lessons = blank.folder / "lessons.md"
        # polling compares whole-second mtimes (notify's PollWatcher): a save within the second
        # the fixture wrote the file would go unseen, so wait for the clock to move on
        while int(time.time()) <= int(lessons.stat().st_mtime):
            time.sleep(0.05)
        # 1. an editor saves by writing a temp file and renaming it over the original
        tmp = blank.folder / "lessons.md.tmp"
        tmp.write_text(lessons.read_text() + "\n## Use ruff\nNot flake8.\n")
        (blank.folder / ".lessons.md.swp").write_text("swap")
        os.replace(tmp, lessons)
        assert wait_for(lambda: any(e.kind == "recorded" for e in events)), events
        recorded = [e for e in events if e.kind == "recorded"]
        assert len(recorded) == 1 and "+## Use ruff" in recorded[0].diff
        assert blank.history.versions()[0].author == "human"
        # 2. agentmem's own write is not recorded a second time
        count = len(blank.history.versions())
        blank.write({"lessons.md": lessons.read_text() + "\n## Own\nby the agent\n"}, "agent", "own")
        time.sleep(1.0)
        assert len(blank.history.versions()) == count + 1
        assert [e.kind for e in events].count("recorded") == 1
        # 3. an invalid hand edit is reported and not recorded
        good = (blank.folder / "tools.yaml").read_text()
        (blank.folder / "tools.yaml").write_text("tools: [\n")
        assert wait_for(lambda: any(e.kind == "invalid" for e in events)), events
        assert "tools.yaml:" in [e for e in events if e.kind == "invalid"][0].message
        assert len(blank.history.versions()) == count + 1
        (blank.folder / "tools.yaml").write_text(good)
        # 4. enough new events and idle: a sleep pass runs in the background, all guards on
        model.push(json.dumps({"summary": "learned", "operations": [
            {"op": "add", "title": "Greet by name", "body": "The user likes being greeted by name.",
             "rationale": "asked twice", "evidence": ["e1", "e3"]}]}))
        blank.journal.append({"kind": "user", "content": "Call me Ada."},
                             {"kind": "assistant", "content": "Hello."},
                             {"kind": "user", "content": "I said: call me Ada."})
        assert wait_for(lambda: any(e.kind == "sleep" for e in events)), events
        assert blank.history.versions()[0].author == "sleep"
        assert "## Greet by name" in lessons.read_text()
        assert blank.sleep_cursor().event == 3
    finally:
        watcher.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert not [e for e in events if e.kind in ("error", "sleep_failed")], events


def test_watcher_never_sleeps_during_a_chat_session(blank: Agent, model):
    from agentmem.locks import FileLock

    blank.journal.append(*({"kind": "user", "content": str(n)} for n in range(5)))
    events: list[WatchEvent] = []
    watcher = Watcher([blank], events.append, model="scripted/x", idle_minutes=0, min_events=1)
    with FileLock(str(blank.state_dir / "session.lock")):
        watcher.maybe_sleep(blank)             # a chat holds the session lock: no pass
    assert events == [] and model.calls == []
    assert watcher.due(blank)[0] is True


def test_failed_background_pass_is_not_retried_until_new_events(blank: Agent, model):
    blank.journal.append(*({"kind": "user", "content": str(n)} for n in range(3)))
    events: list[WatchEvent] = []
    watcher = Watcher([blank], events.append, model="scripted/x", idle_minutes=0, min_events=1)
    model.push("not json", "still not json")   # the answer, and the repair round's
    watcher.maybe_sleep(blank)
    assert [e.kind for e in events] == ["sleep_failed"] and "refused" in events[0].message
    watcher.maybe_sleep(blank)                 # same events: no further call
    assert len(model.calls) == 2
    assert watcher.due(blank) == (False, "the last pass over these events failed; waiting for "
                                         "new events")


def test_chat_refuses_an_invalid_folder_with_the_same_message(cli, blank: Agent, model):
    (blank.folder / "tools.yaml").write_text("tools:\n  - name: [x\n")
    result = cli("chat", blank.folder, "-m", "hi")
    assert result.exit_code == 1 and "tools.yaml:2: invalid YAML" in result.stderr


def _dead_write(blank: Agent, names: list[str]) -> str:
    """An agent write of lessons.md (and `names`) whose process died after lessons.md."""
    import hashlib

    text = (blank.folder / "lessons.md").read_text() + "\n## Own\nwritten by agentmem\n"
    files = {"lessons.md": hashlib.sha256(text.encode()).hexdigest()}
    files.update({n: "0" * 64 for n in names})
    (blank.state_dir / "intent.json").write_text(json.dumps(
        {"id": "dead", "author": "agent", "message": "Add a lesson", "files": files}))
    (blank.folder / "lessons.md").write_text(text)
    return text


def test_the_watcher_settles_a_write_whose_process_died(blank: Agent):
    """A complete one is recorded under its author; a half-done one is put back; neither is
    touched while its writer still holds the lock."""
    events: list = []
    watcher = Watcher([blank], events.append, model="scripted/x", auto_sleep=False)
    old = (blank.folder / "lessons.md").read_text()
    _dead_write(blank, ["archive.md"])                 # died before archive.md
    held, release = threading.Event(), threading.Event()

    def writer_alive() -> None:
        with blank._write_lock:
            held.set()
            release.wait(10)

    alive = threading.Thread(target=writer_alive)
    alive.start()
    held.wait(10)
    watcher.check(blank)                               # its writer may still finish it
    release.set()
    alive.join()
    assert events == [] and (blank.folder / "lessons.md").read_text() != old
    watcher.check(blank)                               # the writer is gone: undone
    assert [e.kind for e in events] == ["settled"]
    assert (blank.folder / "lessons.md").read_text() == old and blank.history.dirty() == []

    _dead_write(blank, [])                             # died after its only file: complete
    versions = len(blank.history.versions())
    watcher.check(blank)
    assert [e.kind for e in events] == ["settled", "recorded"]
    assert events[1].version is not None and events[1].version.author == "agent"
    assert len(blank.history.versions()) == versions + 1 and blank.history.dirty() == []


def test_the_watcher_announces_nothing_when_the_write_finished_meanwhile(blank: Agent):
    """Seen as agentmem's own while its writer was alive; by the time the watcher takes the
    lock the write has finished: nothing to settle, nothing to announce."""
    events: list = []
    watcher = Watcher([blank], events.append, model="scripted/x", auto_sleep=False)
    _dead_write(blank, ["archive.md"])
    found = classify(blank)
    assert found.kind == "own"
    with blank.locked():                               # the writer finishes its job
        blank.history.commit("agent", "Add a lesson", None)
        (blank.state_dir / "intent.json").unlink()
    watcher.settle(blank, found)
    assert events == [] and blank.history.versions()[0].author == "agent"


def test_the_watcher_leaves_a_dead_write_mixed_with_a_persons_edit_to_the_checked_path(
        blank: Agent):
    """A person saves another file between the classification and the settling: nothing is
    settled blindly; the next check takes the hand-edit path (validated), which settles too."""
    events: list = []
    watcher = Watcher([blank], events.append, model="scripted/x", auto_sleep=False)
    old = (blank.folder / "lessons.md").read_text()
    _dead_write(blank, ["archive.md"])
    found = classify(blank)
    assert found.kind == "own"
    persona = blank.folder / "persona.md"
    persona.write_text(persona.read_text() + "\nA person wrote this.\n")
    watcher.settle(blank, found)
    assert events == [] and (blank.state_dir / "intent.json").exists()
    watcher.check(blank)
    assert [e.kind for e in events] == ["recorded"] and "persona.md" in events[0].message
    assert (blank.folder / "lessons.md").read_text() == old and blank.history.dirty() == []


def test_a_background_pass_reports_what_is_over_budget(blank: Agent, model):
    persona = blank.folder / "persona.md"
    persona.write_text(persona.read_text().replace("persona: 2000", "persona: 5"))
    blank.record_hand_edits()
    blank.journal.append(*({"kind": "user", "content": str(n)} for n in range(3)))
    events: list[WatchEvent] = []
    watcher = Watcher([blank], events.append, model="scripted/x", idle_minutes=0, min_events=1)
    model.push('{"operations": [], "summary": "nothing"}')
    watcher.maybe_sleep(blank)
    assert [e.kind for e in events] == ["sleep", "warning"]
    assert "persona.md is over its 5-token budget" in events[1].message


def test_a_pass_does_not_make_itself_due_again(blank: Agent, model):
    """Its own sleep event is not new experience: after a pass, watch waits for real events
    instead of sleeping again every second."""
    blank.journal.append(*({"kind": "user", "content": str(n)} for n in range(3)))
    events: list[WatchEvent] = []
    watcher = Watcher([blank], events.append, model="scripted/x", idle_minutes=0, min_events=1)
    model.push('{"operations": [], "summary": "nothing"}')
    watcher.maybe_sleep(blank)
    assert [e.kind for e in events] == ["sleep"]
    due, why = watcher.due(blank)
    assert not due and why == "0 new events (needs 1)"
    watcher.maybe_sleep(blank)                 # nothing new: no second call
    assert len(model.calls) == 1
