from __future__ import annotations

from agentmem import lessons, persona, tooldefs
from agentmem.memory import validate
from agentmem.pins import pins_preserved

LESSONS = """# Lessons

Intro text.

## Prefer ruff over flake8
<!-- id: L1; evidence: e3 e7; helpful: 2; harmful: 0 -->
The team uses ruff.

<!-- pin -->
## Billing needs two reviewers
<!-- id: L2; helpful: 0; harmful: 0 -->
Company policy.
<!-- /pin -->

## A lesson someone wrote by hand
No metadata here.

```
## not a heading inside a fence
```
"""


def test_lessons_round_trip_is_byte_exact():
    doc, problems = lessons.parse(LESSONS)
    assert not problems and doc is not None
    assert doc.render() == LESSONS
    assert [lesson.id for lesson in doc.lessons] == ["L1", "L2", None]
    first, pinned, hand = doc.lessons
    assert first.evidence == ["e3", "e7"] and first.helpful == 2
    assert pinned.pinned and not first.pinned and not hand.pinned
    assert "not a heading inside a fence" in hand.body


def test_lesson_without_metadata_gets_an_id_and_changed_lesson_renders_cleanly():
    doc, _ = lessons.parse(LESSONS)
    assert doc is not None
    fixed = doc.with_ids()
    assert fixed.lessons[2].id == "L3"
    text = fixed.render()
    assert "## A lesson someone wrote by hand\n<!-- id: L3; helpful: 0; harmful: 0 -->" in text
    again, problems = lessons.parse(text)
    assert not problems and again is not None and again.get("L3") is not None
    # the other lessons are untouched, byte for byte
    assert text.startswith(LESSONS[: LESSONS.index("## A lesson someone")])


def test_bad_lesson_metadata_is_reported_with_file_and_line():
    bad = LESSONS.replace("helpful: 2", "helpful: lots")
    doc, problems = lessons.parse(bad)
    assert doc is None
    assert str(problems[0]) == "lessons.md:6: lesson helpful must be a whole number, not 'lots'"
    dup = LESSONS.replace("id: L2", "id: L1")
    _, problems = lessons.parse(dup)
    assert str(problems[0]).startswith("lessons.md:10: duplicate lesson id 'L1'")
    unclosed = LESSONS.replace("harmful: 0 -->\nThe team", "harmful: 0\nThe team")
    _, problems = lessons.parse(unclosed)
    assert str(problems[0]).startswith("lessons.md:6: lesson metadata comment is not closed")


def test_unclosed_pin_is_an_error():
    _, problems = lessons.parse(LESSONS.replace("<!-- /pin -->\n", ""))
    assert str(problems[0]).startswith("lessons.md:9: pin is never closed")


def test_pins_preserved_detects_changes_removals_and_additions():
    assert pins_preserved(LESSONS, LESSONS.replace("The team uses ruff.", "Use ruff."))
    assert not pins_preserved(LESSONS, LESSONS.replace("Company policy.", "No policy."))
    assert not pins_preserved(LESSONS, LESSONS.replace("<!-- pin -->\n", "").replace(
        "<!-- /pin -->\n", ""))
    assert not pins_preserved(LESSONS, LESSONS + "<!-- pin -->\nmine\n<!-- /pin -->\n")


def test_persona_front_matter_errors_have_lines():
    text = "---\nname: x\nbudgets:\n  persona: [1\n---\nbody\n"
    p, problems = persona.parse(text)
    assert p is None
    assert str(problems[0]) == ("persona.md:4: invalid YAML: a flow sequence is never closed "
                                "(the file ends first)")
    p, problems = persona.parse("---\nname: x\nmodle: gpt\n---\nbody\n")
    assert str(problems[0]).startswith("persona.md:3: unknown setting 'modle'")
    p, problems = persona.parse("no front matter")
    assert str(problems[0]).startswith("persona.md:1: missing YAML front matter")
    p, problems = persona.parse("---\nname: x\nbudgets:\n  lessons: -5\n---\n")
    assert str(problems[0]) == "persona.md:4: budget 'lessons' must be a positive number of tokens"


def test_persona_keeps_front_matter_bytes_and_body():
    text = "---\n# comment kept\nname: x   # trailing\n---\n# Body\n\nHello.\n"
    p, problems = persona.parse(text)
    assert not problems and p is not None
    assert p.body == "# Body\n\nHello.\n" and p.body_line == 5
    assert p.with_body(p.body) == text


TOOLS = """tools:
  - name: grep_repo
    description: Search.
    parameters:
      type: object
      properties:
        pattern: {type: string}
      required: [pattern]
    command: [git, grep, -n, "{pattern}"]
"""


def test_tools_parse_and_errors():
    tools, problems = tooldefs.parse(TOOLS)
    assert not problems and tools is not None
    assert tools[0].command == ["git", "grep", "-n", "{pattern}"]
    assert tools[0].schema()["function"]["name"] == "grep_repo"
    _, problems = tooldefs.parse(TOOLS.replace("{pattern}", "{patern}"))
    assert str(problems[0]).startswith("tools.yaml:9: tool 'grep_repo': command uses {patern}")
    _, problems = tooldefs.parse(TOOLS.replace("    command:", "    comand:"))
    assert str(problems[0]).startswith("tools.yaml:9: unknown tool key 'comand'")
    _, problems = tooldefs.parse(TOOLS + "  - name: [oops\n")
    assert str(problems[0]).startswith("tools.yaml:10: invalid YAML")
    _, problems = tooldefs.parse(TOOLS.replace("grep_repo", "memory"))
    assert "reserved" in str(problems[0])


def test_validate_reports_every_file():
    texts = {"persona.md": "---\nname: [x\n---\n", "lessons.md": LESSONS.replace("id: L2", "id: L1"),
             "tools.yaml": "tools: 3\n", "archive.md": None}
    memory, problems = validate(texts)
    assert memory is None
    assert {p.file for p in problems} == {"persona.md", "lessons.md", "tools.yaml"}


def test_headings_ending_in_a_hash_keep_it():
    text = "# Lessons\n\n## Services are written in C#\nYes.\n\n## Closed heading ##\nx\n"
    doc, problems = lessons.parse(text)
    assert not problems and doc is not None
    assert [x.title for x in doc.lessons] == ["Services are written in C#", "Closed heading"]
    assert doc.with_ids().render().startswith("# Lessons\n\n## Services are written in C#\n<!-- id: L1")


def test_a_parsed_document_is_the_callers_own_despite_the_memo():
    doc, _ = lessons.parse(LESSONS)
    assert doc is not None
    doc.lessons[0].evidence.append("e999")
    doc.lessons[0].title = "changed"
    doc.replace("L2", None)
    problems = lessons.parse(LESSONS.replace("helpful: 2", "helpful: lots"))[1]
    problems.clear()                                  # a caller may change its problem list too
    again, _ = lessons.parse(LESSONS)
    assert again is not None and again.render() == LESSONS
    assert [x.id for x in again.lessons] == ["L1", "L2", None]
    assert "e999" not in again.lessons[0].evidence and again.lessons[0].title != "changed"
    assert lessons.parse(LESSONS.replace("helpful: 2", "helpful: lots"))[1]
