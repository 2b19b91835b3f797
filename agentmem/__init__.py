"""agentmem: LLM agents as plain-text folders that learn."""

__version__ = "0.1.0"
