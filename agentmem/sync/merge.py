"""Three-way merge of two machines' memory files, from the version both started from.

A file changed on one side only takes that side. A file changed on both is merged line by line
with the merge `revert` uses (git merge-file); lessons.md and archive.md are merged lesson by
lesson first, so that two lessons added at the end on both sides both survive, and a lesson
changed on both is merged part by part (a sleep's counters and evidence on one machine, a
person's edit of its text on the other). A lesson id
both sides gave to different new lessons is given anew on this machine's side: the remote's
lesson is published already (other machines and their log events name it), this one is not.
Its metadata and the archive notes that name it are rewritten here. What cannot be merged is
a Conflict that names the file and the lesson: nothing is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agentmem import lessons as lessons_fmt
from agentmem.errors import Conflict
from agentmem.lessons import Lesson, LessonsDoc
from agentmem.memory import ARCHIVE

Texts = dict[str, "str | None"]
LESSON_FILES = (lessons_fmt.FILE, ARCHIVE)
HINT = ("make that part the same on both machines (edit it here or there), then sync again; "
        "see the difference with: git --git-dir=AGENT/.agentmem/git diff HEAD "
        "refs/agentmem/remote/memory")


@dataclass
class Merged:
    files: Texts
    renumbered: dict[str, str] = field(default_factory=dict)    # a local id -> its new id


def merge_memory(base: Texts, local: Texts, remote: Texts, highest_local: int = 0) -> Merged:
    """The memory both sides' changes since `base` make; `highest_local` is the highest lesson
    number this machine ever used (a removed lesson's id is never given again)."""
    local, renumbered = renumber(base, local, remote, highest_local)
    files: Texts = {}
    for name in sorted({*base, *local, *remote}):
        b, mine, theirs = base.get(name), local.get(name), remote.get(name)
        if mine == theirs or theirs == b:
            files[name] = mine
        elif mine == b:
            files[name] = theirs
        elif mine is None or theirs is None:
            raise Conflict(f"{name}: deleted on one machine and changed on the other; nothing "
                           "was changed", HINT)
        elif name in LESSON_FILES:
            files[name] = merge_lessons(b or "", mine, theirs, name)
        else:
            files[name] = merge_text(mine, b or "", theirs, name, "changed in the same lines "
                                     "on both machines")
    return Merged(files, renumbered)


def merge_text(mine: str, base: str, theirs: str, name: str, what: str) -> str:
    from agentmem.undo import merge3

    try:
        return merge3(mine, base, theirs, name)
    except Conflict:
        raise Conflict(f"{name}: {what}; nothing was changed", HINT) from None


# -- lesson ids ----------------------------------------------------------------------------
def _ids(texts: Texts) -> dict[str, set[str]]:
    """Lesson id -> the contents (title and body) it holds in lessons.md and archive.md."""
    out: dict[str, set[str]] = {}
    for name in LESSON_FILES:
        doc = lessons_fmt.parse(texts.get(name) or "", name)[0]
        for lesson in doc.lessons if doc else []:
            if lesson.id:
                out.setdefault(lesson.id, set()).add(lesson.text)
    return out


def renumber(base: Texts, local: Texts, remote: Texts,
             highest_local: int) -> tuple[Texts, dict[str, str]]:
    """`local` with a fresh id for each lesson this machine added (not pushed yet) whose id
    the remote gave to another lesson it added, and the ids so changed. The remote's ids are
    never changed: they are published. A fresh id is past every id either side holds and
    past `highest_local` (the highest this machine ever used)."""
    before, mine, theirs = _ids(base), _ids(local), _ids(remote)
    added_there = {i: t for i, t in theirs.items() if i not in before}
    clashes = [i for i, contents in mine.items()
               if i not in before and i in added_there and added_there[i] != contents]
    if not clashes:
        return dict(local), {}
    top = max([highest_local, *(n for i in [*before, *mine, *theirs]
                                 if (n := _number(i)) is not None)])
    mapping = {old: f"L{top + n}" for n, old in enumerate(sorted(clashes, key=_order), start=1)}
    out = dict(local)
    for name in LESSON_FILES:
        text = out.get(name)
        if text is None:
            continue
        for old, new in mapping.items():
            quoted = re.escape(old)
            text = re.sub(rf"(<!--\s*id\s*:\s*){quoted}(?![\w-])", rf"\g<1>{new}", text)
            text = re.sub(rf"(merged into ){quoted}(?![\w-])", rf"\g<1>{new}", text)
        out[name] = text
    return out, mapping


def _number(lesson_id: str) -> int | None:
    found = re.fullmatch(r"L(\d+)", lesson_id)
    return int(found.group(1)) if found else None


def _order(lesson_id: str) -> tuple[int, str]:
    number = _number(lesson_id)
    return (number if number is not None else 1 << 30, lesson_id)


# -- lessons -------------------------------------------------------------------------------
def _key(lesson: Lesson) -> str:
    return lesson.id or f"title:{lesson.title}"


def _table(doc: LessonsDoc) -> dict[str, Lesson]:
    return {_key(x): x for x in doc.lessons}


def _same(a: Lesson | None, b: Lesson | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.render().rstrip() == b.render().rstrip()


def _loose(doc: LessonsDoc) -> list[str]:
    return [p.strip() for p in doc.parts if isinstance(p, str) and p.strip()]


def merge_lessons(base: str, mine: str, theirs: str, name: str) -> str:
    """Both sides' changes to a lessons file, lesson by lesson (see the module's text)."""
    docs = [lessons_fmt.parse(t, name)[0] for t in (base, mine, theirs)]
    b, m, t = docs
    if b is None or m is None or t is None:
        return merge_text(mine, base, theirs, name, "changed in the same lines on both machines")
    if _loose(b) == _loose(t):
        return _apply(m, t, b, name, remote_is_guest=True)
    if _loose(b) == _loose(m):
        return _apply(t, m, b, name, remote_is_guest=False)
    return merge_text(mine, base, theirs, name, "the text around the lessons changed on both "
                      "machines in the same lines")


def _apply(host: LessonsDoc, guest: LessonsDoc, base: LessonsDoc, name: str, *,
           remote_is_guest: bool) -> str:
    """`host` with `guest`'s changes since `base`, lesson by lesson."""
    b, h, g = _table(base), _table(host), _table(guest)
    result = LessonsDoc(list(host.parts))
    guest_order = [_key(x) for x in guest.lessons]
    for k in dict.fromkeys([*guest_order, *b]):
        was, here, there = b.get(k), h.get(k), g.get(k)
        if _same(there, was) or _same(here, there):
            continue
        if not _same(here, was):               # changed on both sides, differently
            if was is None or here is None or there is None:
                raise _lesson_conflict(name, here or there or was, "changed on one machine "
                                       "and removed or added differently on the other")
            mine, theirs = (here, there) if remote_is_guest else (there, here)
            _put(result, k, _merge_lesson(mine, was, theirs, name), guest_order, set(b) | set(g))
            continue
        if there is None:
            index = _index(result)
            del result.parts[index[k]]
        else:
            _put(result, k, there, guest_order, set(b) | set(g))
    return _tidy(result.render())


def _block(lesson: Lesson) -> str:
    return lesson.render().rstrip("\n") + "\n"


def _merge_lesson(mine: Lesson, was: Lesson, theirs: Lesson, name: str) -> Lesson:
    """One lesson both sides changed, part by part: the title as one side changed it, the body
    merged line by line, both sides' counts added up, the evidence of both. A conflict when
    both changed the title, or the same lines of the body, differently."""
    def one(a: str, base: str, b: str) -> str | None:
        return a if a == b or b == base else b if a == base else None

    title = one(mine.title, was.title, theirs.title)
    if title is None:
        raise _lesson_conflict(name, mine, "renamed differently on both machines")
    body = one(mine.body, was.body, theirs.body)
    if body is None:
        from agentmem.undo import merge3

        try:
            body = merge3(mine.body.strip("\n") + "\n", was.body.strip("\n") + "\n",
                          theirs.body.strip("\n") + "\n", name).strip("\n")
        except Conflict:
            raise _lesson_conflict(name, mine, "changed differently on both machines") from None
    return mine.changed(
        title=title, body=body,
        helpful=max(0, mine.helpful + theirs.helpful - was.helpful),
        harmful=max(0, mine.harmful + theirs.harmful - was.harmful),
        evidence=[*mine.evidence, *(e for e in theirs.evidence if e not in mine.evidence)])


def _lesson_conflict(name: str, lesson: Lesson | None, what: str) -> Conflict:
    label = f"{lesson.id} '{lesson.title}'" if lesson and lesson.id else \
        f"'{lesson.title}'" if lesson else "a lesson"
    return Conflict(f"{name}: lesson {label} was {what}; nothing was changed", HINT)


def _index(doc: LessonsDoc) -> dict[str, int]:
    return {_key(p): i for i, p in enumerate(doc.parts) if isinstance(p, Lesson)}


def _put(doc: LessonsDoc, k: str, lesson: Lesson, guest_order: list[str],
         known: set[str]) -> None:
    """Replace the lesson with key `k`, or insert it after the lesson before it in the guest's
    order and after the lessons only the host added there (at the end when there is none).
    `known`: the keys of the base's and the guest's lessons."""
    fresh = Lesson(**{**lesson.__dict__, "raw": _block(lesson) + "\n"})
    index = _index(doc)
    if k in index:
        doc.parts[index[k]] = fresh
        return
    before = [p for p in guest_order[: guest_order.index(k)] if p in index] \
        if k in guest_order else []
    at = index[before[-1]] + 1 if before else len(doc.parts)
    while at < len(doc.parts):
        part = doc.parts[at]
        if not isinstance(part, Lesson) or _key(part) in known:
            break
        at += 1
    if at > 0:
        previous = doc.parts[at - 1]
        text = previous if isinstance(previous, str) else previous.render()
        if not text.endswith("\n\n"):
            ended = text.rstrip("\n") + "\n\n"
            doc.parts[at - 1] = ended if isinstance(previous, str) else \
                Lesson(**{**previous.__dict__, "raw": ended})
    doc.parts.insert(at, fresh)


def _tidy(text: str) -> str:
    return text.rstrip("\n") + "\n" if text.strip() else text
