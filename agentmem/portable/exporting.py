"""`agentmem export`: choose the format, check the options that go with it, write the result."""

from __future__ import annotations

from pathlib import Path

from agentmem.agent import Agent
from agentmem.errors import AgentmemError, UsageError
from agentmem.fsutil import atomic_write
from agentmem.portable import export, finetune


def export_agent(agent: Agent, fmt: str, *, max_tokens: int | None = None,
                 min_rating: str | None = None, skip_reverted: bool = False,
                 output: str | None = None) -> export.Exported:
    """The export as text (and notes for stderr); written atomically to `output` if given."""
    if fmt not in export.FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"choose one of: {', '.join(export.FORMATS)}")
    if max_tokens is not None and fmt not in export.FILE_NAMES:
        raise UsageError("--max-tokens goes with --format agents-md or claude-md")
    if (min_rating is not None or skip_reverted) and fmt != "finetune":
        raise UsageError("--min-rating and --skip-reverted go with --format finetune")
    if min_rating is not None and min_rating not in finetune.RATINGS:
        raise UsageError(f"--min-rating {min_rating} is not a choice (choose: "
                         f"{', '.join(finetune.RATINGS)})")
    if fmt in export.FILE_NAMES:
        result = export.markdown(agent, fmt, max_tokens)
    elif fmt == "af":
        result = export.letta(agent)
    else:
        result = finetune.finetune(agent, min_rating=min_rating, skip_reverted=skip_reverted)
    if output:
        path = Path(output).expanduser()
        if path.resolve().is_relative_to(agent.folder):
            raise UsageError(f"{output} is inside the agent folder; nothing was written",
                             "write the export outside the agent's folder")
        try:
            atomic_write(path, result.text)
        except OSError as exc:
            raise AgentmemError(f"cannot write {output}: {exc.strerror or exc}",
                                "check the folder exists and is writable") from None
    return result
