from __future__ import annotations

import json
from pathlib import Path

from agentmem.journal import Cursor, Journal


def make(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "log.jsonl", tmp_path / "log.lock")


def test_append_assigns_increasing_ids_and_times(tmp_path: Path):
    j = make(tmp_path)
    first = j.append({"kind": "user", "content": "a"}, {"kind": "assistant", "content": "b"})
    second = j.append({"kind": "user", "content": "c", "id": "ignored"})
    assert [e["id"] for e in first + second] == ["e1", "e2", "e3"]
    assert all(e["time"].endswith("Z") for e in first)
    assert [e["content"] for e in j.read().events] == ["a", "b", "c"]


def test_torn_and_corrupt_lines_are_skipped_with_warnings(tmp_path: Path):
    j = make(tmp_path)
    j.append({"kind": "user", "content": "one"})
    with open(j.path, "a") as fh:
        fh.write("{not json}\n")
        fh.write('{"id": "e2", "kind": "user", "content": "torn')   # crash mid-write
    j.append({"kind": "user", "content": "after the crash"})
    result = j.read()
    assert [e["content"] for e in result.events] == ["one", "after the crash"]
    assert len(result.warnings) == 2
    assert result.warnings[0].startswith("log.jsonl:2: skipped an unreadable log line")
    assert result.warnings[1].startswith("log.jsonl:3: skipped an unreadable log line")
    # ids keep growing past the torn line; every complete line is still readable
    assert result.events[-1]["id"] == "e2"
    lines = j.path.read_text().splitlines()
    assert json.loads(lines[-1])["content"] == "after the crash"


def test_read_from_cursor_reads_only_new_events(tmp_path: Path):
    j = make(tmp_path)
    j.append(*({"kind": "user", "content": str(n)} for n in range(100)))
    cursor = j.end_cursor()
    assert cursor.event == 100 and cursor.offset == j.path.stat().st_size
    j.append({"kind": "user", "content": "new"})
    result = j.read(cursor)
    assert [e["content"] for e in result.events] == ["new"]
    assert result.end.event == 101 and result.end.offset == j.path.stat().st_size


def test_a_bad_cursor_offset_falls_back_to_a_full_scan(tmp_path: Path):
    j = make(tmp_path)
    j.append(*({"kind": "user", "content": str(n)} for n in range(10)))
    result = j.read(Cursor(event=7, offset=13))     # offset in the middle of a line
    assert [e["id"] for e in result.events] == ["e8", "e9", "e10"]
    result = j.read(Cursor(event=7, offset=10**9))  # log truncated by hand
    assert [e["id"] for e in result.events] == ["e8", "e9", "e10"]


def test_last_event_number_reads_the_tail_only(tmp_path: Path):
    j = make(tmp_path)
    j.append(*({"kind": "user", "content": "x" * 200} for n in range(2000)))
    with open(j.path, "a") as fh:
        fh.write('{"id": "e2001", "content": "tor')
    assert j.last_event_number() == 2000


def test_last_event_number_finds_a_long_last_event_behind_a_torn_line(tmp_path: Path):
    journal = Journal(tmp_path / "log.jsonl", tmp_path / "log.lock")
    journal.append({"kind": "user", "content": "short"})
    for size in (100, 4095, 4096, 5000, 70_000):     # around and past the first tail read
        journal.append({"kind": "tool_result", "content": "x" * size})
        expected = journal.last_event_number()
        with open(journal.path, "ab") as fh:
            fh.write(b'{"id": "e999", "kind": "user", "content": "torn')     # no newline
        assert journal.last_event_number() == expected
        data = journal.path.read_bytes()
        journal.path.write_bytes(data[:data.rindex(b"\n") + 1])
    assert journal.last_event_number() == 6


def test_secrets_never_reach_the_log(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890abcdef")
    j = make(tmp_path)
    j.append({"kind": "user", "content": "key sk-proj-abcdefghijklmnopqrstuvwxyz0123 and "
                                         "Bearer abcdefghijklmnop1234 and tok-1234567890abcdef",
              "arguments": {"api_key": "AKIAABCDEFGHIJKLMNOP"}})
    text = j.path.read_text()
    for secret in ("sk-proj-abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnop1234",
                   "tok-1234567890abcdef", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in text
    assert text.count("[REDACTED]") == 4


def test_a_lone_surrogate_is_logged_escaped_and_reads_back(tmp_path):
    from agentmem.journal import Journal

    journal = Journal(tmp_path / "log.jsonl", tmp_path / "log.lock")
    journal.append({"kind": "user", "content": "bad \ud800 text, caf\u00e9"})
    raw = (tmp_path / "log.jsonl").read_bytes()
    raw.decode("utf-8")                        # still valid UTF-8 on disk
    assert journal.read().events[0]["content"] == "bad \ud800 text, caf\u00e9"


def test_a_tag_another_process_creates_is_used_by_the_next_append(tmp_path: Path):
    """Until this copy has synced, every append looks for the machine tag again: a sync in
    another process (here: another Journal on the same files) may create it meanwhile."""
    j = make(tmp_path)
    assert j.append({"kind": "user", "content": "before"})[0]["id"] == "e1"
    tag = make(tmp_path).machine_tag(create=True)
    assert tag
    assert j.append({"kind": "user", "content": "after"})[0]["id"] == f"e2-{tag}"
