"""Memory in other shapes: import Letta agent files and Markdown instruction files (AGENTS.md,
CLAUDE.md), export to those shapes and to a fine-tuning set.

    source.py    the imported memory, format-neutral (Imported), and reading a file safely
    letta.py     a Letta .af file (v1 and v2 layouts) -> Imported
    markdown.py  a Markdown instruction file -> Imported
    build.py     Imported -> a new agent folder, built beside its destination and renamed
    export.py    an agent -> AGENTS.md / CLAUDE.md text, or a Letta v2 agent file
    finetune.py  an agent's log -> OpenAI chat fine-tuning JSONL
"""
