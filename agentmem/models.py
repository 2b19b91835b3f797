"""Which model to use, and whether its key is there. Pure Python: no litellm import."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from agentmem import config
from agentmem.errors import AgentmemError, ModelError

ALIASES = {
    "4.1": "openai/gpt-4.1",
    "4.1-mini": "openai/gpt-4.1-mini",
    "4o-mini": "openai/gpt-4o-mini",
    "sonnet": "anthropic/claude-sonnet-4-5",
    "haiku": "anthropic/claude-haiku-4-5",
    "opus": "anthropic/claude-opus-4-1",
    "gemini-flash": "gemini/gemini-2.5-flash",
    "llama": "ollama/llama3.2",
    "qwen": "ollama/qwen2.5",
}

KEYS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY", "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "together_ai": "TOGETHERAI_API_KEY", "xai": "XAI_API_KEY",
    "cohere": "COHERE_API_KEY", "fireworks_ai": "FIREWORKS_API_KEY",
}
NO_KEY = {"ollama", "ollama_chat", "hosted_vllm", "lm_studio", "llamafile", "scripted"}


@dataclass(frozen=True)
class ModelSpec:
    model: str                 # a litellm model string
    api_base: str | None
    source: str                # where the choice came from, for messages


def user_config() -> dict[str, Any]:
    path = config.config_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise AgentmemError(f"{path}: invalid YAML: {exc}", "fix or remove the config file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AgentmemError(f"{path}: the config must be a mapping (model:, aliases:, ...)")
    return data


def aliases(cfg: dict[str, Any] | None = None) -> dict[str, str]:
    user = (user_config() if cfg is None else cfg).get("aliases") or {}
    return {**ALIASES, **{str(k): str(v) for k, v in user.items()}}


def resolve(flag: str | None, settings: dict[str, Any], *, sleep: bool = False,
            flag_name: str = "--model") -> ModelSpec:
    """--model (or `flag_name`), then $AGENTMEM_MODEL, then persona.md's model:, then the user
    config file."""
    cfg = user_config()
    env_name = config.SLEEP_MODEL_ENV if sleep else config.MODEL_ENV
    key = "sleep_model" if sleep else "model"
    candidates = [
        (flag, flag_name),
        (os.environ.get(env_name), f"${env_name}"),
        (settings.get(key), f"persona.md '{key}:'"),
        (cfg.get(key), f"{config.config_path()} '{key}:'"),
    ]
    if sleep:  # the sleep model falls back to the chat model
        candidates += [(os.environ.get(config.MODEL_ENV), f"${config.MODEL_ENV}"),
                       (settings.get("model"), "persona.md 'model:'"),
                       (cfg.get("model"), f"{config.config_path()} 'model:'")]
    for value, source in candidates:
        if value:
            model = aliases(cfg).get(str(value), str(value))
            api_base = settings.get("api_base") or cfg.get("api_base") or os.environ.get(
                "AGENTMEM_API_BASE")
            return ModelSpec(model, api_base, source)
    raise ModelError("no model configured",
                     f"pass --model (e.g. --model openai/gpt-4.1-mini), set {env_name}, add "
                     f"'model:' to persona.md, or set 'model:' in {config.config_path()}",
                     kind="config")


def provider_of(model: str) -> str:
    if "/" in model:
        return model.split("/", 1)[0]
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")):
        return "openai"
    if model.startswith("claude"):
        return "anthropic"
    return ""


def check_key(spec: ModelSpec) -> None:
    """Fail early, naming the variable to set, when the provider's key is missing."""
    provider = provider_of(spec.model)
    if provider in NO_KEY or spec.api_base:   # local servers (llama.cpp, vLLM) need no key
        return
    var = KEYS.get(provider)
    if var and not os.environ.get(var):
        raise ModelError(f"no API key for {spec.model} (model from {spec.source})",
                         f"set {var} (export {var}=...), or pick another model with "
                         f"{spec.source if spec.source.startswith('--') else '--model'}",
                         kind="auth")
