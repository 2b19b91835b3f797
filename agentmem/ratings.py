"""/good and /bad in a chat: which lessons a rating counts, and writing the counts. Never prints.

A rating is about one reply. It counts for two kinds of lessons, by a fixed rule:

- every lesson the agent's memory edits in that turn added or changed (the edit is the
  agent's own judgement of what the turn was about), as long as the edit was not undone;
- of the lessons in the prompt of that turn, at most MAX_SHOWN: those that share at least
  MIN_SHARED distinctive words with the user's message or the reply, the ones sharing most
  first. Every lesson is in every prompt, so being shown proves nothing; sharing words that
  few other lessons use is a sign the lesson was the one in play.

/good adds one to each one's `helpful`, /bad to its `harmful`, as one version authored `human`
(a person rated). A reply is counted once: a second rating of it is logged, and counts nothing.
Pinned lessons are counted like others (a sleep pass never retires them).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentmem import lessons as lessons_fmt
from agentmem.agent import Agent
from agentmem.errors import InvalidAgent
from agentmem.history import History, Version

MIN_SHARED = 2        # distinctive words a shown lesson must share with the exchange
MAX_SHOWN = 3         # shown lessons counted per rating, at most
MIN_WORD = 3          # shorter words are never distinctive ("is", "ok"); "SQL" may be
RATINGS = ("good", "bad")

_WORD = re.compile(r"[a-z0-9][a-z0-9_]*")
# common words that say nothing about which lesson was in play
STOPWORDS = frozenset("""
all and any are ask but can did few for get got had has her him his how its let may not now
off one our out own put said say see she the too two use was way who why yes yet you
about above after again against also always another anything around because been before being
below between both cannot could does doing done down during each either else even every false
first from have having here into just know last like made make many more most much must need
needs never next none nothing only other others over please really same should since some
something still such sure than thank thanks that their them then there these they thing things
this those though through true very want well were what when where which while will with
within without would your yours okay instead using used uses into onto than what whether
rather quite often usually already until upon ever once might shall whose whom less least
better best almost enough anyway perhaps maybe actually simply mostly mainly
""".split())


def words(text: str) -> set[str]:
    """The words of `text` that can be distinctive: lower case, at least MIN_WORD characters,
    not a stop word or a number, a final `s` dropped (so "tests" meets "test")."""
    out = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < MIN_WORD or word in STOPWORDS or word.isdigit():
            continue
        if word.endswith("s") and not word.endswith("ss") and len(word) > 4:
            word = word[:-1]
        out.add(word)
    return out


@dataclass
class Turn:
    """What one chat reply was made from, kept by the session so the reply can be rated."""

    reply: str                       # the id of the assistant event rated
    request: str                     # the user's message
    answer: str                      # the reply's text (all of the turn's)
    shown: dict[str, str]            # lesson id -> its title and body, as in the turn's prompts
    versions: list[Version] = field(default_factory=list)   # the agent's edits in the turn
    rated: str | None = None         # the rating that was counted, once one was


@dataclass
class Counted:
    """What a rating counted."""

    rating: str
    lessons: list[tuple[str, str]]   # (lesson id, why) for each lesson counted
    version: Version | None = None
    gone: list[str] = field(default_factory=list)   # chosen, but no longer in lessons.md
    again: str | None = None         # the earlier rating, when this reply was rated already

    @property
    def ids(self) -> list[str]:
        return [lesson_id for lesson_id, _ in self.lessons]

    @property
    def counter(self) -> str:
        return "helpful" if self.rating == "good" else "harmful"

    def to_log(self) -> dict[str, Any]:
        """The fields the rating's feedback event carries."""
        return {"lessons": self.ids, "why": dict(self.lessons),
                "version": self.version.number if self.version else None,
                **({"already_rated": self.again} if self.again else {})}


def matching(shown: dict[str, str], exchange: str) -> list[tuple[str, list[str]]]:
    """The shown lessons the rule counts for an exchange (the user's message and the reply):
    (id, the distinctive words it shares), most shared first, at most MAX_SHOWN. A word is
    distinctive when at most a quarter of the shown lessons use it, or only one lesson does
    (with fewer than eight shown, a quarter is less than two)."""
    vocab = {lesson_id: words(text) for lesson_id, text in shown.items()}
    spread = Counter(word for found in vocab.values() for word in found)
    limit = max(1, len(vocab) // 4)
    said = words(exchange)
    scored = []
    for order, (lesson_id, found) in enumerate(vocab.items()):
        shared = sorted(w for w in found & said if spread[w] <= limit)
        if len(shared) >= MIN_SHARED:
            scored.append((-len(shared), order, lesson_id, shared))
    return [(lesson_id, shared) for _, _, lesson_id, shared in sorted(scored)[:MAX_SHOWN]]


def edited(history: History, versions: list[Version]) -> list[str]:
    """The ids of the lessons these versions added or changed (title or body) in lessons.md."""
    out: list[str] = []
    for version in versions:
        after = history.file_at(version, lessons_fmt.FILE)
        before = history.file_at(history.parent(version), lessons_fmt.FILE)
        new, _ = lessons_fmt.parse(after or "")
        old, _ = lessons_fmt.parse(before or "")
        if new is None or old is None or after == before:
            continue                  # an edit never leaves lessons.md invalid, nor finds it so
        was = {x.id: x.text for x in old.lessons}
        out += [x.id for x in new.lessons if x.id and was.get(x.id) != x.text]
    return list(dict.fromkeys(out))


def recounted(lesson: lessons_fmt.Lesson, key: str) -> lessons_fmt.Lesson:
    """The lesson with one more `key` (helpful or harmful), its text as it was but for the
    metadata line: a counter change is a one-line diff."""
    new = lesson.changed(**{key: getattr(lesson, key) + 1})
    lines = (lesson.raw or "").splitlines(keepends=True)
    for i, line in enumerate(lines[1:], 1):
        if lessons_fmt.META.match(line.strip()):
            meta = new.render().splitlines()[1]
            lines[i] = line[: len(line) - len(line.lstrip())] + meta + line[len(line.rstrip()):]
            new.raw = "".join(lines)
            break
    return new


def count(agent: Agent, turn: Turn, rating: str, kept: list[Version]) -> Counted:
    """Count a rating of `turn` for the lessons the rule picks, as one `human` version;
    `kept` is the agent's edits of the session not undone. InvalidAgent, with nothing
    written, when lessons.md does not parse."""
    if rating not in RATINGS:
        raise ValueError(rating)
    if turn.rated is not None:
        return Counted(rating, [], again=turn.rated)
    commits = {v.commit for v in kept}
    chosen = [(i, "edited by the agent in that turn")
              for i in edited(agent.history, [v for v in turn.versions if v.commit in commits])]
    taken = {i for i, _ in chosen}
    chosen += [(i, "shown, and shares " + ", ".join(shared))
               for i, shared in matching(turn.shown, f"{turn.request}\n{turn.answer}")
               if i not in taken]
    key = "helpful" if rating == "good" else "harmful"
    found: list[tuple[str, str]] = []

    def compute(texts: dict[str, str | None]) -> dict[str, str | None]:
        found.clear()
        doc, problems = lessons_fmt.parse(texts.get(lessons_fmt.FILE) or "")
        if doc is None:
            raise InvalidAgent(problems, "the rating was not counted; fix lessons.md and rate "
                                         "again")
        for lesson_id, why in chosen:
            lesson = doc.get(lesson_id)
            if lesson is not None:
                doc.replace(lesson_id, recounted(lesson, key))
                found.append((lesson_id, why))
        return {lessons_fmt.FILE: doc.render()} if found else {}

    def message() -> str:
        lines = [f"Rated {rating} (reply {turn.reply}): {key} +1 for "
                 + ", ".join(i for i, _ in found), ""]
        return "\n".join(lines + [f"- {i}: {why}" for i, why in found])

    version = agent.update(compute, "human", message) if chosen else None
    turn.rated = rating
    gone = [i for i, _ in chosen if i not in {f for f, _ in found}]
    return Counted(rating, list(found), version, gone)


def top(doc: lessons_fmt.LessonsDoc, n: int = 3) -> dict[str, list[dict[str, Any]]]:
    """The `n` most helpful lessons (helpful count, fewest harmful first on a tie) and the `n`
    most harmful (harmful count, fewest helpful first); a lesson with no count is in neither."""
    def row(lesson: lessons_fmt.Lesson) -> dict[str, Any]:
        return {"id": lesson.id, "title": lesson.title, "helpful": lesson.helpful,
                "harmful": lesson.harmful, "pinned": lesson.pinned}

    rated = list(enumerate(doc.lessons))
    helpful = sorted((x for x in rated if x[1].helpful),
                     key=lambda x: (-x[1].helpful, x[1].harmful, x[0]))
    harmful = sorted((x for x in rated if x[1].harmful),
                     key=lambda x: (-x[1].harmful, x[1].helpful, x[0]))
    return {"helpful": [row(x) for _, x in helpful[:n]],
            "harmful": [row(x) for _, x in harmful[:n]]}
