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
API_BASE_ENV = "AGENTMEM_API_BASE"
NO_KEY = {"ollama", "ollama_chat", "hosted_vllm", "lm_studio", "llamafile", "scripted"}


@dataclass(frozen=True)
class ModelSpec:
    model: str                 # a litellm model string
    api_base: str | None
    source: str                # where the choice came from, for messages
    api_base_source: str | None = None    # where api_base came from, for messages

    def describe(self, role: str = "model") -> str:
        """One line saying which model a command will use and where that choice came from,
        e.g. `sleep model: openai/gpt-4.1-mini (from persona.md 'sleep_model:')`."""
        line = f"{role}: {self.model} (from {self.source})"
        if self.api_base:
            line += f", api_base {self.api_base}" + (
                f" (from {self.api_base_source})" if self.api_base_source else "")
        return line


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
            flag_name: str = "--model", fallback: ModelSpec | None = None) -> ModelSpec:
    """The chat model: --model (or `flag_name`), then $AGENTMEM_MODEL, then persona.md's
    model:, then the user config file's.

    The sleep model (`sleep=True`) is one set for sleeping: the flag, $AGENTMEM_SLEEP_MODEL,
    persona.md's sleep_model:, the config file's sleep_model:. Without one it is `fallback`
    when given (a chat session's own model: /sleep never talks to a provider the session did
    not choose), else the chat model as above."""
    cfg = user_config()
    env_name = config.SLEEP_MODEL_ENV if sleep else config.MODEL_ENV
    key = "sleep_model" if sleep else "model"
    candidates = [
        (flag, flag_name),
        (os.environ.get(env_name), f"${env_name}"),
        (settings.get(key), f"persona.md '{key}:'"),
        (cfg.get(key), f"{config.config_path()} '{key}:'"),
    ]
    for value, source in candidates:
        if value:
            return _spec(str(value), source, settings, cfg)
    if sleep and fallback is not None:
        return ModelSpec(fallback.model, fallback.api_base,
                         f"the chat session's {fallback.source}", fallback.api_base_source)
    if sleep:  # the sleep model falls back to the chat model
        return resolve(None, settings, flag_name=flag_name)
    raise ModelError("no model configured",
                     f"pass --model (e.g. --model openai/gpt-4.1-mini), set {env_name}, add "
                     f"'model:' to persona.md, or set 'model:' in {config.config_path()}",
                     kind="config")


def _spec(value: str, source: str, settings: dict[str, Any], cfg: dict[str, Any]) -> ModelSpec:
    """The model `value` names (an alias or a litellm string), with the api_base in force:
    persona.md's api_base:, else the config file's, else $AGENTMEM_API_BASE."""
    model = aliases(cfg).get(value, value)
    for api_base, where in ((settings.get("api_base"), "persona.md 'api_base:'"),
                            (cfg.get("api_base"), f"{config.config_path()} 'api_base:'"),
                            (os.environ.get(API_BASE_ENV), f"${API_BASE_ENV}")):
        if api_base:
            return ModelSpec(model, str(api_base), source, where)
    return ModelSpec(model, None, source)


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
