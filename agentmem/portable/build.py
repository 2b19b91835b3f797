"""Imported memory -> a new agent folder, whole or not at all.

The folder is built under a temporary name beside the destination (same file system), its
history started with one version authored `import`, then renamed into place; on any failure
the temporary folder (and any parent folder the import created) is removed, so a failed import
leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from agentmem import config, tooldefs
from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import STATE_DIR, Agent
from agentmem.errors import AgentmemError, InvalidAgent, UsageError
from agentmem.fsutil import atomic_write
from agentmem.journal import FILE as LOG_FILE
from agentmem.memory import validate
from agentmem.portable.source import Imported
from agentmem.redact import REDACTED, env_secrets, redact
from agentmem.tokens import estimate


def destination(spec: str | None, name: str) -> Path:
    """DEST as given (a bare name goes under $AGENTMEM_HOME, as with `new`), or the imported
    agent's name under $AGENTMEM_HOME."""
    if not spec:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "imported-agent"
        return config.agents_home() / slug
    path = Path(spec).expanduser()
    if "/" not in spec and not spec.startswith("."):
        path = config.agents_home() / spec
    return path


def check_destination(dest: Path, source: Path) -> None:
    """Refuse a destination that is a file, a folder with something in it, inside an agent
    folder, or one that holds the file being imported."""
    where = dest.resolve()
    if source.resolve().is_relative_to(where):
        raise UsageError(f"{source} is inside the destination {dest}; nothing was created",
                         "import into a new folder elsewhere")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder; nothing was created",
                         "choose another destination")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"{dest} already exists and is not empty; nothing was created",
                         "choose another destination or remove the folder")
    for parent in where.parents:
        if (parent / "persona.md").is_file() and (parent / STATE_DIR).is_dir():
            raise UsageError(f"{dest} is inside the agent folder {parent}; nothing was created",
                             "import into a folder of its own")


def texts_of(imported: Imported) -> dict[str, str]:
    """The memory files of the new agent."""
    persona = persona_fmt.render(imported.settings, imported.persona_body)
    used = {x.lesson.id for x in imported.lessons if x.lesson.id}
    doc = lessons_fmt.LessonsDoc([lessons_fmt.BLANK_DOC + "\n"])
    for marker, text in imported.pinned_texts:
        doc.parts.append(f"{marker}\n{text.strip(chr(10))}\n<!-- /pin -->\n\n")
    for item in imported.lessons:
        lesson = item.lesson
        if not lesson.id:
            lesson = lesson.changed(id=doc.next_id(used))
            used.add(lesson.id or "")
        if item.pinned:
            # one text part, so no blank line is put inside the markers
            doc.parts.append(f"{item.pin_marker.strip()}\n{lesson.render().rstrip()}\n"
                             "<!-- /pin -->\n\n")
        else:
            doc.parts.append(lesson.changed())
    tools = tooldefs.BLANK + "".join(f"{line}\n" for line in imported.tool_comments)
    return {"persona.md": persona, "lessons.md": doc.render().rstrip("\n") + "\n",
            "tools.yaml": tools}


def message_of(imported: Imported, texts: dict[str, str]) -> str:
    pinned = sum(1 for x in imported.lessons if x.pinned)
    lines = [f"Import {imported.name} from {imported.source}", "",
             f"Imported: persona.md (~{estimate(texts['persona.md'])} tokens), "
             f"{len(imported.lessons)} lessons ({pinned} pinned), {len(imported.events)} log "
             "events."]
    if imported.skipped:
        lines += ["", "Skipped:"] + [f"- {item}" for item in imported.skipped]
    return "\n".join(lines)


def build(imported: Imported, dest: Path, source: Path) -> Agent:
    check_destination(dest, source)
    texts = texts_of(imported)
    # a key pasted into a Letta block or an instruction file must not land in the history
    # (the log events are redacted by journal.append, as every event is)
    env = env_secrets()
    redacted = {name: redact(text, env) for name, text in texts.items()}
    touched = [name for name in texts if redacted[name] != texts[name]]
    if touched:
        imported.skipped.append(f"secrets in {', '.join(touched)}: replaced by {REDACTED}")
    texts = redacted
    _, problems = validate(dict(texts))
    if problems:
        raise InvalidAgent(problems, f"{source} could not become a valid agent; nothing was "
                           "created")
    created = _first_missing(dest.parent)
    temp = dest.parent / f".{dest.name}.import-{secrets.token_hex(4)}"
    try:
        temp.mkdir(parents=True)
        for name, text in texts.items():
            atomic_write(temp / name, text)
        (temp / LOG_FILE).touch()
        agent = Agent.open(temp)          # starts the history, as `new` does
        if imported.events:
            agent.journal.append(*imported.events)
        agent.history.commit("import", message_of(imported, texts),
                             agent.journal.last_event_number())
        os.rename(temp, dest)             # over an empty folder too
    except BaseException as exc:
        shutil.rmtree(created or temp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise AgentmemError(f"cannot create {dest}: {exc.strerror or exc}; nothing was "
                                "created", "choose another destination") from None
        raise
    return Agent.open(dest)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to `folder` that does not exist yet (None: all do)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing
