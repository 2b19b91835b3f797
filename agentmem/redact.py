"""Remove secrets (API keys, bearer tokens, private keys) from text before it is stored or shown."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# An AWS secret access key has no prefix: 40 characters of base64 (no padding) standing alone,
# with upper and lower case and digits in it (so a git hash, lower-case hex, is none). Its regex
# has no literal to look for and costs ~35 ns a character, so it runs only on text that holds
# such a run: found in the text's bytes with each key character made "a" and every other byte a
# space (~1 ns a character), then checked for the three kinds of character.
_KEY_CHARS = "A-Za-z0-9/+"
_RUN_BYTES = bytes(0x61 if re.fullmatch(f"[{_KEY_CHARS}]", chr(b)) else 0x20 for b in range(256))
_BARE_RUN = b" " + b"a" * 40 + b" "
_MIXED = re.compile(rb"(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])")


def _has_bare_key(text: str) -> bool:
    """Whether `text` holds 40 key characters, mixed, between characters that are no key's."""
    raw = text.encode("utf-8", "surrogatepass")
    runs = b" " + raw.translate(_RUN_BYTES) + b" "
    at = runs.find(_BARE_RUN)
    while at >= 0:
        if _MIXED.match(raw, at, at + 40):       # runs[at + 1] is raw[at]
            return True
        at = runs.find(_BARE_RUN, at + 41)
    return False


# (pattern, gate): a pattern runs only on text that passes its gate, the needles one of which the
# text contains (case-insensitive patterns look for theirs in the lower-cased text), or a function
# as cheap. A plain `in` is ~100x cheaper than a regex scan starting with \b, and most text holds
# no secret at all.
_Gate = tuple[str, ...] | Callable[[str], bool]


class _Lazy:
    """A regex compiled the first time its gate lets text through: most runs of agentmem
    (history, diff) redact nothing, and most texts pass few gates, while compiling every
    pattern costs more than the rest of importing this module."""

    __slots__ = ("pattern", "flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def folded(self) -> bool:
        """Case-insensitive: its needles are looked for in the lower-cased text."""
        return bool(self.flags & re.I) or self.pattern.startswith("(?i)")

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled


_PATTERNS: list[tuple[_Lazy, _Gate]] = [
    (_Lazy(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
           re.S), ("-----BEGIN",)),
    (_Lazy(r"\bsk-(?:ant-|proj-|or-v1-)?[A-Za-z0-9_\-]{16,}"), ("sk-",)),  # OpenAI, Anthropic
    (_Lazy(r"\bsess-[A-Za-z0-9]{32,}"), ("sess-",)),                          # OpenAI session
    (_Lazy(r"\bxai-[A-Za-z0-9]{60,}"), ("xai-",)),                           # xAI
    (_Lazy(r"\bAIza[0-9A-Za-z_\-]{30,}"), ("AIza",)),                        # Google
    (_Lazy(r"\bya29\.[0-9A-Za-z_\-]{20,}"), ("ya29.",)),                     # Google OAuth
    (_Lazy(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),             # AWS key id
    (_Lazy(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (_Lazy(r"\bgithub_pat_[A-Za-z0-9_]{40,}"), ("github_pat_",)),            # GitHub
    (_Lazy(r"\bgl(?:pat|dt|rt)-[A-Za-z0-9_\-]{20,}"), ("glpat-", "gldt-", "glrt-")),  # GitLab
    (_Lazy(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), ("xox",)),                   # Slack
    (_Lazy(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/\-]{20,}"),
     ("hooks.slack.com/",)),                                                # Slack webhook
    (_Lazy(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}"), ("k_live_", "k_test_")),  # Stripe
    (_Lazy(r"\bwhsec_[A-Za-z0-9+/=]{24,}"), ("whsec_",)),                     # Stripe webhook
    (_Lazy(r"\bnpm_[A-Za-z0-9]{36,}"), ("npm_",)),                            # npm
    (_Lazy(r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"), ("pypi-AgE",)),                 # PyPI
    (_Lazy(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),                              # Hugging Face
    (_Lazy(r"\bgsk_[A-Za-z0-9]{30,}"), ("gsk_",)),                            # Groq
    (_Lazy(r"\br8_[A-Za-z0-9]{30,}"), ("r8_",)),                              # Replicate
    # a JSON Web Token: base64url header (`{"` is "eyJ"), payload and signature
    (_Lazy(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"
           r"(?:\.[A-Za-z0-9_\-]+){0,2}"), ("eyJ",)),
    (_Lazy(r"(?i)(\bbearer\s+)[A-Za-z0-9_\-\.=/+]{16,}"), ("bearer",)),
    (_Lazy(r"(?i)((?:api[_-]?key|secret|token|password|passwd)\s*[=:]\s*[\"']?)"
           r"[^\s\"',;]{8,}"), ("api", "secret", "token", "passw")),
    # a bare AWS secret access key, last: a key of a known shape is redacted whole first
    (_Lazy(rf"(?<![{_KEY_CHARS}])(?=[{_KEY_CHARS}]{{0,39}}[A-Z])(?=[{_KEY_CHARS}]{{0,39}}[a-z])"
           rf"(?=[{_KEY_CHARS}]{{0,39}}[0-9])[{_KEY_CHARS}]{{40}}(?![{_KEY_CHARS}=])"),
     _has_bare_key),
]

# (pattern, gate, needles are looked for in the lower-cased text, a mark): flags read once, not
# per call. The mark is a character every needle holds: when the text lacks it, no needle is
# looked for (one character is found ~10x faster than a word, and prose has no _ or -).
_MARKS = "_-."
_CHECKS = [(p, gate, p.folded,
            next((m for m in _MARKS if isinstance(gate, tuple) and all(m in n for n in gate)), ""))
           for p, gate in _PATTERNS]

_ENV_HINT = re.compile("KEY|TOKEN|SECRET|PASSWORD", re.I)
_ENV_HINT_BYTES = re.compile(b"KEY|TOKEN|SECRET|PASSWORD", re.I)


_hinted: tuple[tuple[bytes, ...], list[bytes]] = ((), [])   # (names seen, names that hint)


def env_secrets() -> list[str]:
    """Values of environment variables that look like keys, longest first. Which names look
    like keys is worked out again only when the set of names changes (a pass redacts several
    texts, and matching every name costs more than the rest of redacting one)."""
    global _hinted
    raw = getattr(os.environ, "_data", None)   # POSIX: the bytes, without decoding every one
    if os.name == "posix" and isinstance(raw, dict):
        names = tuple(raw)     # a copy, as another thread may set a variable meanwhile
        if names != _hinted[0]:
            # a name with non-ASCII bytes is decoded for the text regex
            _hinted = (names, [n for n in names if (_ENV_HINT_BYTES.search(n) if n.isascii()
                                                    else _ENV_HINT.search(os.fsdecode(n)))])
        found = (raw.get(name) for name in _hinted[1])
        # a value has at least as many bytes as characters
        values = [os.fsdecode(v) for v in found if v is not None and len(v) >= 12]
        values = [value for value in values if len(value) >= 12]
    else:
        values = [value for name, value in os.environ.items()
                  if len(value) >= 12 and _ENV_HINT.search(name)]
    return sorted(values, key=len, reverse=True)


def redact(text: str, env: list[str] | None = None) -> str:
    """Return `text` with every recognised secret replaced by [REDACTED]."""
    for value in env_secrets() if env is None else env:
        if value in text:
            text = text.replace(value, REDACTED)
    lower = text.lower()
    marked = {mark: mark in text for mark in _MARKS}
    marked[""] = True
    for lazy, gate, folded, mark in _CHECKS:
        if isinstance(gate, tuple):
            if not marked[mark]:
                continue
            haystack = lower if folded else text
            for needle in gate:       # a loop, not any(): a generator costs more than a search
                if needle in haystack:
                    break
            else:
                continue
        elif not gate(text):
            continue
        pattern = lazy.compiled()
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def count_secrets(text: str) -> int:
    """How many secrets `text` holds (memoised: a guard compares the same texts again and again)."""
    return _count_secrets(text, tuple(env_secrets()))


@lru_cache(maxsize=64)
def _count_secrets(text: str, env: tuple[str, ...]) -> int:
    return redact(text, list(env)).count(REDACTED)


def redact_obj(obj: Any, env: list[str] | None = None) -> Any:
    """Redact every string inside a JSON-like structure."""
    env = env_secrets() if env is None else env
    if isinstance(obj, str):
        return redact(obj, env)
    if isinstance(obj, dict):
        return {k: redact_obj(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_obj(v, env) for v in obj]
    return obj


class StreamRedactor:
    """Redacts a text that arrives in pieces (a streamed reply) before any of it is shown.

    Text is released only up to the last whitespace, so a secret split across chunks is seen
    whole before it is printed; what is released is always a redacted prefix of the whole.
    """

    def __init__(self) -> None:
        self.text = ""
        self.emitted = ""

    def feed(self, chunk: str) -> str:
        self.text += chunk
        cut = max(self.text.rfind(" "), self.text.rfind("\n"), self.text.rfind("\t"))
        return self._release(self.text[: cut + 1]) if cut >= 0 else ""

    def flush(self) -> str:
        return self._release(self.text)

    def _release(self, upto: str) -> str:
        clean = redact(upto)
        if clean.startswith(self.emitted):
            out = clean[len(self.emitted):]
        else:   # a secret's start was already shown as harmless text: continue after it
            common = 0
            while common < min(len(clean), len(self.emitted)) and clean[common] == self.emitted[common]:
                common += 1
            out = clean[common:]
        self.emitted += out
        return out
