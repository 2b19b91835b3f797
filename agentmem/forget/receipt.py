"""Forget's own folder, `.agentmem/forget/`: a receipt fN.json per forget (what it removed and
where, never the text), the intent of one under way, its staged files; and the next number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.fsutil import read_json
from agentmem.recovery import FORGET_INTENT

if TYPE_CHECKING:
    from agentmem.agent import Agent

FOLDER = "forget"            # in the state folder: receipts fN.json, the intent, staged files


@dataclass
class Receipt:
    """What a forget removed and where (never the text), as kept in .agentmem/forget/fN.json."""

    data: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return str(self.data["forget"])

    @property
    def remaining(self) -> list[str]:
        return list(self.data.get("remaining") or [])

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "path": str(self.path)}


def next_number(agent: Agent) -> int:
    """One more than the highest forget so far (its receipt, or an unfinished intent)."""
    folder = agent.state_dir / FOLDER
    numbers = [0]
    if folder.is_dir():
        numbers += [int(m.group(1)) for p in folder.iterdir()
                    if (m := re.fullmatch(r"f(\d+)\.json", p.name))]
    intent = read_json(agent.state_dir / FORGET_INTENT)
    if isinstance(intent.get("number"), int):
        numbers.append(intent["number"])
    return max(numbers) + 1
