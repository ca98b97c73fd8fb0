"""Config files by name: ``skills-tiny`` means ``./envs/skills-tiny.yaml``, else the repo's.

Shared by the command line (``--env NAME``, ``--agent NAME``) and Python
(``gym.make("mosgym/MoSSim-v0", config="sim-skills-tiny")``), so a name means the same file in
both.
"""

from __future__ import annotations

from pathlib import Path

from mosgym.errors import MosgymError

REPO_ROOT = Path(__file__).resolve().parents[2]


def config_dirs(kind: str) -> list[Path]:
    """Where configs of `kind` ('envs' or 'agents') are looked up: ./kind, then the repo's."""
    dirs = [Path.cwd() / kind, REPO_ROOT / kind]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in dirs[:i]]


def list_configs(kind: str) -> list[str]:
    """The config names of `kind`, ./kind's first."""
    names: dict[str, None] = {}
    for d in config_dirs(kind):
        for p in sorted(d.glob("*.yaml")):
            names.setdefault(p.stem, None)
    return list(names)


def find_config(kind: str, name_or_path: str | Path, label: str | None = None) -> Path:
    """A config by path, or by name in ./envs, ./agents (or the repo's).

    `label` names the input in the error (default: the command-line flag, e.g. '--env').
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    for d in config_dirs(kind):
        for cand in (d / name_or_path, d / f"{name_or_path}.yaml"):
            if cand.is_file():
                return cand
    known = ", ".join(list_configs(kind)) or "none found"
    label = label or f"--{kind[:-1]}"
    raise MosgymError(f"{label} {name_or_path}: no such config file (known: {known})")
