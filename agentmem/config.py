"""Where things live. Every path can be redirected by one environment variable."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "AGENTMEM_HOME"          # where bare agent names resolve
CONFIG_ENV = "AGENTMEM_CONFIG"      # the user config file
MODEL_ENV = "AGENTMEM_MODEL"        # default chat model
SLEEP_MODEL_ENV = "AGENTMEM_SLEEP_MODEL"


def agents_home() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentmem" / "agents"


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentmem" / "config.yaml"
