"""The memory tool against Anthropic's reference memory tool (memory_20250818): a parity table.

Claude is trained on the reference's commands and on the messages its reference implementation
returns (anthropics/anthropic-sdk-python: src/anthropic/lib/tools/_beta_builtin_memory_tool.py,
BetaLocalFilesystemMemoryTool). Each case below adapts one of that implementation's tests
(tests/lib/tools/memory_tools/test_filesystem.py) to our /memories, which holds exactly
persona.md and lessons.md: the same file text, our file's name in the path. `reference` is
what the reference returns for that input on those files, written from reading it: (ok, text),
where an error is a ToolError whose text goes back with `is_error: true`. A result sent through
litellm cannot carry is_error, so ours begins "error: " instead: that prefix is the flag, and
the rest is compared.

Where we differ on purpose (our confinement to two files, which always exist and keep their
names; files read with universal newlines), the case says what we return and why. The
classification is computed, not declared: `exact` (the same text), `shape` (the same lines, a
value differs: both match the case's pattern), `hint` (the reference's text, then what to do
instead), `differs`. test_the_parity_tally pins the counts.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentmem.agent import Agent
from agentmem.memory_tool import MemoryTool

PERSONA = ("---\nname: parity\ndescription: An agent for the parity table.\nbudgets:\n"
           "  persona: 2000\n  lessons: 4000\n---\n# Parity\n\nYou keep notes.\n")   # 132 bytes
ONLY_TWO = ("was not created: your memory is exactly /memories/persona.md and "
            "/memories/lessons.md, and no other file can be made. Put what you want to remember "
            "in one of them with str_replace or insert")
CRLF = b"line1\r\nline2\r\nline3\r\n"


@dataclass(frozen=True)
class Case:
    name: str                                  # the reference test this adapts
    lessons: bytes                             # lessons.md before the call
    args: dict[str, Any]
    reference: tuple[bool, str]                # what the reference returns: (ok, text)
    ours: tuple[bool, str] | None = None       # what we return, where it is not the reference's
    why: str = ""                              # why we differ
    after: bytes | None = None                 # lessons.md after a successful call, reference
    ours_after: bytes | None = None            # ... and ours, where it differs
    shape: str | None = None                   # a pattern both texts match: same lines, values
    setup: Callable[[Agent, Path], None] | None = None

    def expected(self) -> tuple[bool, str]:
        if self.ours is not None:
            return self.ours
        ok, text = self.reference
        return ok, text if ok else f"error: {text}"

    def kind(self) -> str:
        """How our answer's shape compares with the reference's."""
        (ok, text), (ref_ok, ref_text) = self.expected(), self.reference
        ref = ref_text if ref_ok else f"error: {ref_text}"
        if ok != ref_ok:
            return "differs"
        if text == ref:
            return "exact"
        if self.shape and re.fullmatch(self.shape, ref, re.S) and re.fullmatch(self.shape, text,
                                                                                re.S):
            return "shape"
        return "hint" if text.startswith(ref) else "differs"

    def same_outcome(self) -> bool:
        return self.expected()[0] == self.reference[0] and (
            self.ours_after is None or self.ours_after == self.after)


def _escape_link(agent: Agent, tmp_path: Path) -> None:
    """lessons.md a symbolic link to a file outside the folder."""
    outside = tmp_path / "secret.txt"
    outside.write_text("sensitive data")
    (agent.folder / "lessons.md").unlink()
    (agent.folder / "lessons.md").symlink_to(outside)


def _dir_link(agent: Agent, tmp_path: Path) -> None:
    """A folder in the agent folder that is a link to a folder outside it."""
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", agent.folder / "bad_link", target_is_directory=True)


SNIPPET = "The memory file has been edited. Here is the snippet showing the change (with line numbers):"
CONTENT = "Here's the content of /memories/lessons.md with line numbers:"
LISTING = ("Here're the files and directories up to 2 levels deep in /memories, excluding hidden "
           "items:")
MISSING = "The path /memories/nonexistent.txt does not exist"
CASES = [
    Case("test_create", b"", {"command": "create", "path": "/memories/test_file.txt",
                              "file_text": "Hello, World!"},
         (True, "File created successfully at: /memories/test_file.txt"),
         (False, f"error: /memories/test_file.txt {ONLY_TWO}"),
         "memory is exactly two files: no other file can be made"),
    Case("test_create_nested_directories", b"",
         {"command": "create", "path": "/memories/deep/nested/file.txt", "file_text": "Nested"},
         (True, "File created successfully at: /memories/deep/nested/file.txt"),
         (False, f"error: /memories/deep/nested/file.txt {ONLY_TWO}"),
         "memory is exactly two files: no folders either"),
    Case("test_create_error_if_file_already_exists", b"Original",
         {"command": "create", "path": "/memories/lessons.md", "file_text": "New"},
         (False, "File /memories/lessons.md already exists"),
         (False, "error: File /memories/lessons.md already exists. It cannot be replaced whole: "
                 "view it, then change it with str_replace or insert"),
         "the reference would delete and create it again; here delete is refused, so say how"),
    Case("test_view_file", b"Line 1\nLine 2\nLine 3",
         {"command": "view", "path": "/memories/lessons.md"},
         (True, f"{CONTENT}\n     1\tLine 1\n     2\tLine 2\n     3\tLine 3")),
    Case("test_view_directory", b"Line 1\nLine 2\nLine 3", {"command": "view", "path": "/memories"},
         (True, f"{LISTING}\n4.0K\t/memories\n20B\t/memories/lessons.md\n132B\t/memories/persona.md"),
         (True, f"{LISTING}\n152B\t/memories\n20B\t/memories/lessons.md\n132B\t/memories/persona.md"),
         "/memories is not a folder on disk: its size is its two files'",
         shape=re.escape(LISTING) + r"\n[\d.]+[BK]\t/memories\n20B\t/memories/lessons\.md\n"
                                    r"132B\t/memories/persona\.md"),
    Case("test_view_file_with_range", b"Line 1\nLine 2\nLine 3\nLine 4\nLine 5",
         {"command": "view", "path": "/memories/lessons.md", "view_range": [2, 4]},
         (True, f"{CONTENT}\n     2\tLine 2\n     3\tLine 3\n     4\tLine 4")),
    Case("test_view_error_for_non_existent_file", b"",
         {"command": "view", "path": "/memories/nonexistent.txt"},
         (False, f"{MISSING}. Please provide a valid path.")),
    Case("test_view_error_for_non_utf8_file", b"\xff\xfe\x80 not utf-8",
         {"command": "view", "path": "/memories/lessons.md"},
         (False, "The file /memories/lessons.md is not a valid UTF-8 text file and cannot be read "
                 "as memory.")),
    Case("test_str_replace", b"Line 1\nOld Text\nLine 3",
         {"command": "str_replace", "path": "/memories/lessons.md", "old_str": "Old Text",
          "new_str": "New Text"},
         (True, f"{SNIPPET}\n     1\tLine 1\n     2\tNew Text\n     3\tLine 3"),
         after=b"Line 1\nNew Text\nLine 3"),
    Case("test_str_replace_error_when_string_not_found", b"Hello, World!",
         {"command": "str_replace", "path": "/memories/lessons.md", "old_str": "NotFound",
          "new_str": "Python"},
         (False, "No replacement was performed, old_str `NotFound` did not appear verbatim in "
                 "/memories/lessons.md.")),
    Case("test_str_replace_error_when_string_appears_multiple_times", b"Hello\nMiddle\nHello",
         {"command": "str_replace", "path": "/memories/lessons.md", "old_str": "Hello",
          "new_str": "Hi"},
         (False, "No replacement was performed. Multiple occurrences of old_str `Hello` in lines: "
                 "1, 3. Please ensure it is unique")),
    Case("test_str_replace_error_for_non_existent_file", b"",
         {"command": "str_replace", "path": "/memories/nonexistent.txt", "old_str": "old",
          "new_str": "new"},
         (False, f"{MISSING}. Please provide a valid path.")),
    Case("test_insert", b"Line 1\nLine 2",
         {"command": "insert", "path": "/memories/lessons.md", "insert_line": 1,
          "insert_text": "Inserted Line"},
         (True, "The file /memories/lessons.md has been edited."),
         after=b"Line 1\nInserted Line\nLine 2\n"),
    Case("test_insert_at_beginning_of_file", b"Line 1\nLine 2",
         {"command": "insert", "path": "/memories/lessons.md", "insert_line": 0,
          "insert_text": "First Line"},
         (True, "The file /memories/lessons.md has been edited."),
         after=b"First Line\nLine 1\nLine 2\n"),
    Case("test_insert_at_end_of_file", b"Line 1\nLine 2",
         {"command": "insert", "path": "/memories/lessons.md", "insert_line": 2,
          "insert_text": "Last Line"},
         (True, "The file /memories/lessons.md has been edited."),
         after=b"Line 1\nLine 2\nLast Line\n"),
    Case("test_view_preserves_crlf_line_endings", CRLF,
         {"command": "view", "path": "/memories/lessons.md"},
         (True, f"{CONTENT}\n     1\tline1\r\n     2\tline2\r\n     3\tline3\r\n     4\t"),
         (True, f"{CONTENT}\n     1\tline1\n     2\tline2\n     3\tline3\n     4\t"),
         "memory files are read with universal newlines: a line's CR is not shown",
         shape=re.escape(CONTENT) + r"(\n {5}\d\tline\d\r?){3}\n {5}4\t"),
    Case("test_str_replace_preserves_crlf_line_endings", CRLF,
         {"command": "str_replace", "path": "/memories/lessons.md", "old_str": "line2",
          "new_str": "LINE2"},
         (True, f"{SNIPPET}\n     1\tline1\r\n     2\tLINE2\r\n     3\tline3\r\n     4\t"),
         (True, f"{SNIPPET}\n     1\tline1\n     2\tLINE2\n     3\tline3\n     4\t"),
         "read with universal newlines, written back with CRLF: the file is the same",
         after=b"line1\r\nLINE2\r\nline3\r\n", ours_after=b"line1\r\nLINE2\r\nline3\r\n",
         shape=re.escape(SNIPPET) + r"(\n {5}\d\t(line|LINE)\d\r?){3}\n {5}4\t"),
    Case("test_insert_preserves_crlf_line_endings", CRLF,
         {"command": "insert", "path": "/memories/lessons.md", "insert_line": 1,
          "insert_text": "Inserted"},
         (True, "The file /memories/lessons.md has been edited."),
         (True, "The file /memories/lessons.md has been edited."),
         "a CRLF file is written back with CRLF on every line, the inserted one too",
         after=b"line1\r\nInserted\nline2\r\nline3\r\n",
         ours_after=b"line1\r\nInserted\r\nline2\r\nline3\r\n"),
    Case("test_insert_error_for_non_existent_file", b"",
         {"command": "insert", "path": "/memories/nonexistent.txt", "insert_line": 0,
          "insert_text": "text"},
         (False, f"{MISSING}. Please provide a valid path.")),
    Case("test_insert_error_for_invalid_insert_line", b"Line 1\nLine 2",
         {"command": "insert", "path": "/memories/lessons.md", "insert_line": 10,
          "insert_text": "text"},
         (False, "Invalid `insert_line` parameter: 10. It should be within the range [0, 2].")),
    Case("test_delete", b"To be deleted", {"command": "delete", "path": "/memories/lessons.md"},
         (True, "Successfully deleted /memories/lessons.md"),
         (False, "error: /memories/lessons.md cannot be deleted: your memory is exactly "
                 "/memories/persona.md and /memories/lessons.md. Instead, to retire a lesson, "
                 "str_replace its whole section (from its '## ' title to the next one) with an "
                 "empty new_str"),
         "the two files always exist; say how to remove text instead"),
    Case("test_delete_directory", b"", {"command": "delete", "path": "/memories/subdir"},
         (True, "Successfully deleted /memories/subdir"),
         (False, "error: The path /memories/subdir does not exist"),
         "there are no folders in /memories"),
    Case("test_delete_error_when_file_not_found", b"",
         {"command": "delete", "path": "/memories/nonexistent.txt"}, (False, MISSING)),
    Case("test_delete_not_allow_deleting_memories_directory", b"",
         {"command": "delete", "path": "/memories"},
         (False, "Cannot delete the /memories directory itself")),
    Case("test_rename", b"Original content",
         {"command": "rename", "old_path": "/memories/lessons.md",
          "new_path": "/memories/new_name.md"},
         (True, "Successfully renamed /memories/lessons.md to /memories/new_name.md"),
         (False, "error: /memories/lessons.md cannot be renamed: agentmem reads your memory from "
                 "exactly /memories/persona.md and /memories/lessons.md, so both keep their "
                 "names. To move text from one to the other, str_replace it out of one and "
                 "insert it into the other"),
         "the two files keep their names; say how to move text instead"),
    Case("test_rename_to_nested_path", b"Content",
         {"command": "rename", "old_path": "/memories/lessons.md",
          "new_path": "/memories/nested/dir/lessons.md"},
         (True, "Successfully renamed /memories/lessons.md to /memories/nested/dir/lessons.md"),
         (False, "error: /memories/lessons.md cannot be renamed: agentmem reads your memory from "
                 "exactly /memories/persona.md and /memories/lessons.md, so both keep their "
                 "names. To move text from one to the other, str_replace it out of one and "
                 "insert it into the other"),
         "the two files keep their names, and there are no folders"),
    Case("test_rename_error_when_source_not_found", b"",
         {"command": "rename", "old_path": "/memories/nonexistent.txt",
          "new_path": "/memories/new.txt"}, (False, MISSING)),
    Case("test_rename_error_when_destination_exists", b"File 1",
         {"command": "rename", "old_path": "/memories/lessons.md",
          "new_path": "/memories/persona.md"},
         (False, "The destination /memories/persona.md already exists")),
    Case("test_path_validation_reject_paths_not_starting_with_memories", b"",
         {"command": "create", "path": "/invalid/path.txt", "file_text": "Invalid"},
         (False, "Path must start with /memories, got: /invalid/path.txt")),
    Case("test_path_validation_reject_paths_trying_to_escape_memories", b"",
         {"command": "create", "path": "/memories/../../../etc/passwd",
          "file_text": "Escape attempt"},
         (False, "Path /memories/../../../etc/passwd would escape /memories directory")),
    Case("test_symlink_validation_reject_symlink_pointing_outside_memories", b"",
         {"command": "view", "path": "/memories/lessons.md"},
         (False, "Path /memories/lessons.md would escape /memories directory"),
         setup=_escape_link),
    Case("test_symlink_validation_reject_creating_files_through_symlink_pointing_outside", b"",
         {"command": "create", "path": "/memories/bad_link/hacked.txt",
          "file_text": "malicious content"},
         (False, "Path /memories/bad_link/hacked.txt would escape /memories directory"),
         (False, f"error: /memories/bad_link/hacked.txt {ONLY_TWO}"),
         "nothing outside the two files is looked at, links included: no file is made",
         setup=_dir_link),
]


@pytest.fixture
def parity(blank: Agent) -> Agent:
    blank.write({"persona.md": PERSONA}, "human", "the parity table's persona")
    return blank


def _files(agent: Agent) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(agent.folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parity_with_the_reference_memory_tool(parity: Agent, tmp_path: Path, case: Case):
    (parity.folder / "lessons.md").write_bytes(case.lessons)
    if case.setup:
        case.setup(parity, tmp_path)
    before = _files(parity)
    outcome = MemoryTool(parity).run(json.dumps(case.args))
    assert (outcome.ok, outcome.output) == case.expected()
    after = _files(parity)
    if outcome.ok and case.args["command"] != "view":
        expected = case.ours_after if case.ours_after is not None else case.after
        assert after.pop("lessons.md") == expected
        before.pop("lessons.md")
    assert after == before           # nothing else changed, and nothing at all on an error
    assert sorted(p.name for p in parity.folder.iterdir()) == sorted(
        ["persona.md", "lessons.md", "tools.yaml", "log.jsonl", ".agentmem"]
        + (["bad_link"] if case.setup is _dir_link else []))


def test_every_difference_says_why():
    for case in CASES:
        assert bool(case.why) == (case.ours is not None), case.name


def test_the_parity_tally():
    """32 of the reference's tests: the same outcome in 25, the same message in 21 and the
    same lines with another value in 3 (24 of 32 in shape); 1 adds a hint to the reference's
    words; 7 differ on purpose, each saying why."""
    kinds = Counter(case.kind() for case in CASES)
    assert len(CASES) == 32
    assert kinds == {"exact": 21, "shape": 3, "hint": 1, "differs": 7}
    assert sum(case.same_outcome() for case in CASES) == 25
    assert [c.name for c in CASES if c.kind() == "differs"] == [
        "test_create", "test_create_nested_directories", "test_delete", "test_delete_directory",
        "test_rename", "test_rename_to_nested_path",
        "test_symlink_validation_reject_creating_files_through_symlink_pointing_outside"]


# -- which memory tool a model is offered ------------------------------------------------------
@pytest.mark.parametrize("model,native", [
    ("anthropic/claude-sonnet-4-5", True),
    ("anthropic/claude-opus-4-1-20250805", True),
    ("anthropic/claude-haiku-4-5", True),
    ("claude-sonnet-4-20250514", True),           # no prefix: litellm routes it to Anthropic
    ("anthropic/claude-fable-5", True),
    ("anthropic/claude-3-7-sonnet-20250219", False),   # before the memory tool
    ("anthropic/claude-3-5-haiku-20241022", False),
    ("anthropic/claude-x", False),                # a name that says no version: not assumed
    ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", False),   # not Anthropic's API
    ("openai/gpt-4.1", False),
    ("ollama/llama3.2", False),
])
def test_claude_from_4_on_is_offered_anthropics_own_memory_tool(model: str, native: bool):
    from agentmem.memory_tool import NATIVE, SCHEMA, schema_for

    assert schema_for(model) == (NATIVE if native else SCHEMA)
    assert NATIVE == {"type": "memory_20250818", "name": "memory"}


def test_the_native_memory_tool_goes_over_the_wire_with_its_beta_header(
        cli, agent: Agent, monkeypatch: pytest.MonkeyPatch):
    """What litellm sends to Anthropic for a Claude 4 model: the native tool type beside the
    tools.yaml functions, the beta header it needs, and our answer as the tool result."""
    import wire
    from wire import anthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    view = {"command": "view", "path": "/memories"}
    with wire.serve() as server:
        wire.persona(agent, api_base=server.url)
        server.push(anthropic.stream(["Let me look."], [anthropic.ToolUse("memory", view)],
                                     model="claude-sonnet-4-5"),
                    anthropic.stream(["Two files."], model="claude-sonnet-4-5"))
        result = cli("chat", agent.folder, "-m", "What do you remember?", "--model",
                     "anthropic/claude-sonnet-4-5")
    assert result.exit_code == 0, result.stderr
    first, second = server.requests
    tools = first.body["tools"]
    assert tools[0] == {"type": "memory_20250818", "name": "memory"}
    assert [t["name"] for t in tools[1:]] == ["grep_repo", "git_diff", "run_tests"]
    assert all("input_schema" in t for t in tools[1:])
    assert "context-management-2025-06-27" in first.headers["anthropic-beta"].split(",")
    [block] = [b for b in second.body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert block["content"].startswith("Here're the files and directories up to 2 levels deep "
                                       "in /memories, excluding hidden items:\n")
    assert second.body["tools"] == tools
