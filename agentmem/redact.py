"""Remove secrets (API keys, bearer tokens, private keys) from text before it is stored or shown."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# (pattern, needles): a pattern runs only on text that contains one of its needles (case-
# insensitive ones are looked for in the lower-cased text). A plain `in` is ~100x cheaper than a
# regex scan starting with \b, and most text holds no secret at all.
_PATTERNS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
                re.S), ("-----BEGIN",)),
    (re.compile(r"\bsk-(?:ant-|proj-|or-v1-)?[A-Za-z0-9_\-]{16,}"), ("sk-",)),  # OpenAI, Anthropic
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), ("AIza",)),                        # Google
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),             # AWS key id
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}"), ("github_pat_",)),            # GitHub
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), ("xox",)),                   # Slack
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),                              # Hugging Face
    (re.compile(r"\bgsk_[A-Za-z0-9]{30,}"), ("gsk_",)),                            # Groq
    (re.compile(r"\br8_[A-Za-z0-9]{30,}"), ("r8_",)),                              # Replicate
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9_\-\.=/+]{16,}"), ("bearer",)),
    (re.compile(r"(?i)((?:api[_-]?key|secret|token|password|passwd)\s*[=:]\s*[\"']?)"
                r"[^\s\"',;]{8,}"), ("api", "secret", "token", "passw")),
]

# (pattern, needles, needles are looked for in the lower-cased text): flags read once, not per call
_CHECKS = [(p, needles, bool(p.flags & re.I)) for p, needles in _PATTERNS]

_ENV_HINT = re.compile("KEY|TOKEN|SECRET|PASSWORD", re.I)
_ENV_HINT_BYTES = re.compile(b"KEY|TOKEN|SECRET|PASSWORD", re.I)


def env_secrets() -> list[str]:
    """Values of environment variables that look like keys, longest first."""
    raw = getattr(os.environ, "_data", None)   # POSIX: the bytes, without decoding every one
    if os.name == "posix" and isinstance(raw, dict):
        # a copy, as another thread may set a variable meanwhile; a value has at least as many
        # bytes as characters, and a name with non-ASCII bytes is decoded for the text regex
        values = [os.fsdecode(value) for name, value in list(raw.items())
                  if len(value) >= 12 and (_ENV_HINT_BYTES.search(name) if name.isascii()
                                           else _ENV_HINT.search(os.fsdecode(name)))]
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
    for pattern, needles, folded in _CHECKS:
        haystack = lower if folded else text
        if not any(needle in haystack for needle in needles):
            continue
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
