"""The sample agents shipped with agentmem (sample_agents/, installed as agentmem/sample_agents)."""

from __future__ import annotations

from pathlib import Path

from agentmem.errors import NotFound


def samples_root() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "sample_agents", here.parent / "sample_agents"):
        if candidate.is_dir():
            return candidate
    raise NotFound("the sample agents are not installed with this copy of agentmem")


def list_samples() -> list[str]:
    try:
        root = samples_root()
    except NotFound:
        return []
    return sorted(p.name for p in root.iterdir() if (p / "persona.md").is_file())


def find_sample(sample: str) -> Path:
    path = Path(sample).expanduser()
    if (path / "persona.md").is_file():
        return path
    names = list_samples()
    if sample in names:
        return samples_root() / sample
    raise NotFound(f"no sample agent '{sample}'",
                   f"samples: {', '.join(names) or 'none installed'}; or give a path to a folder")
