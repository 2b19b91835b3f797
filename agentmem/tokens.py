"""Token estimates that need no tokenizer download and no model library (fast, offline).

About four characters a token for English prose and code; good enough for budgets and for
deciding when to trim. Exact counts, when a model is involved, come from litellm's usage.
"""

from __future__ import annotations

import math


def estimate(text: str) -> int:
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 4))
