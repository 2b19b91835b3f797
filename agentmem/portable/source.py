"""What an import produces, whatever the source format, and reading the source file safely."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmem.errors import AgentmemError, UsageError
from agentmem.lessons import Lesson

# Checked on the file's size before a byte is read: a real agent file is well under a
# megabyte (the samples are 24-117 KB); one of hundreds of megabytes is not memory.
MAX_IMPORT_BYTES = 200 << 20


@dataclass
class ImportedLesson:
    lesson: Lesson
    pinned: bool = False
    pin_marker: str = "<!-- pin -->"     # the line that opens its pin


@dataclass
class Imported:
    """Memory read from another format, ready to become an agent folder."""

    name: str
    settings: dict[str, Any]              # persona.md front matter (name, description, model...)
    persona_body: str
    lessons: list[ImportedLesson] = field(default_factory=list)
    # pinned text of lessons.md outside any lesson (our own af export): (opening line, text)
    pinned_texts: list[tuple[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)   # log.jsonl events, in order
    tool_comments: list[str] = field(default_factory=list)       # lines for tools.yaml
    skipped: list[str] = field(default_factory=list)             # what was left out, and why
    source: str = ""                                             # "Letta agent file x.af"


def read_source(path: Path) -> bytes:
    """The file's bytes: refused (before reading) when absent, not a file, empty or too big."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", "give the path of a .af or Markdown file") from None
    except OSError as exc:
        raise AgentmemError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise UsageError(f"{path} is not a file", "give the path of a .af or Markdown file")
    if st.st_size > MAX_IMPORT_BYTES:
        raise UsageError(f"{path} is {st.st_size >> 20} MB, over the {MAX_IMPORT_BYTES >> 20} MB "
                         "an import reads; nothing was created",
                         "an agent file that large is not memory: export the agent again "
                         "without its archival data")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise AgentmemError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_IMPORT_BYTES:      # grew after the check
        raise UsageError(f"{path} is over the {MAX_IMPORT_BYTES >> 20} MB an import reads; "
                         "nothing was created")
    if not data.strip():
        raise UsageError(f"{path} is empty; nothing was created",
                         "give a Letta agent file (.af) or a Markdown instruction file")
    return data
