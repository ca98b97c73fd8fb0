"""Agent configs: the YAML format in agents/, strict loading, and building agents from them.

name: mos-cossim-ema          # default: the file name
kind: mos                     # mos | static | odm | sb3 | sb3-policy
reward: {type: cossim, ema: true}   # optional: the reward the env computes for this agent
action_kind: discrete         # optional: force the env's action kind
params: {...}                 # kind-specific: MosParams, StaticParams, ODMParams,
                              # SB3Params, SB3PolicyParams
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosgym.agents.base import Agent
from mosgym.agents.mos import MosAgent, MosParams
from mosgym.agents.odm import ODMAgent, ODMParams
from mosgym.agents.policy_file import policy_action_kind
from mosgym.agents.sb3 import (
    ALGO_ACTION_KINDS,
    SB3Agent,
    SB3Params,
    SB3PolicyAgent,
    SB3PolicyParams,
    check_algo,
)
from mosgym.agents.static import StaticAgent, StaticParams
from mosgym.config import RewardConfig, apply_overrides, from_dict, read_yaml
from mosgym.errors import MosgymError

PARAMS: dict[str, type] = {
    "mos": MosParams,
    "static": StaticParams,
    "odm": ODMParams,
    "sb3": SB3Params,
    "sb3-policy": SB3PolicyParams,
}
"""Agent kind -> its params dataclass."""
ACTION_KINDS = ("continuous", "discrete", "any")


@dataclass
class AgentConfig:
    """One agent: what it is, the reward it learns from, and its settings."""

    name: str
    """Short name for MLflow runs and tables (default: the YAML file's name)."""
    kind: str
    """'mos' (the paper's scorer), 'static' (PROP/TEMP/UNI/fixed), 'odm' (EXP3 bandit), 'sb3'
    (an SB3 algorithm learning online) or 'sb3-policy' (a saved SB3 policy, frozen)."""
    reward: RewardConfig | None = None
    """The reward the env computes for this agent (replaces the env config's `reward`);
    none: the env's own."""
    action_kind: str | None = None
    """'continuous' or 'discrete' forces the env's action kind; after loading this holds what
    the agent needs ('any': it follows the env)."""
    params: Any = None
    """Kind-specific settings (a mapping in YAML; the kind's params dataclass once loaded)."""


def _resolve_path(value: str, base: Path | None) -> str:
    """Relative file paths in an agent YAML resolve against the YAML's folder."""
    if base is None or not value or Path(value).is_absolute() or Path(value).exists():
        return value
    candidate = base / value
    return str(candidate) if candidate.exists() or Path(f"{candidate}.zip").exists() else value


def native_action_kind(cfg: AgentConfig) -> str:
    """The action kind an agent of this config supports, ignoring `action_kind`."""
    if cfg.kind in ("sb3", "sb3-policy"):
        check_algo(cfg.params.algo, cfg.name)
    if cfg.kind == "sb3":
        return ALGO_ACTION_KINDS[cfg.params.algo]
    if cfg.kind == "sb3-policy":
        cls = check_algo(cfg.params.algo, cfg.name)
        return policy_action_kind(cfg.params.path, cls, cfg.params.trust_policy)
    return "any"


def load_agent_config(
    source: str | Path | Mapping[str, Any] | AgentConfig, overrides: list[str] | None = None
) -> AgentConfig:
    """AgentConfig from a YAML path or a mapping, plus 'params.lr=1e-3'-style overrides.

    Unknown keys, wrong types and bad kinds raise MosgymError naming the key and the file.
    """
    if isinstance(source, AgentConfig):
        source = dataclasses.asdict(source)
    base: Path | None = None
    if isinstance(source, str | Path):
        data: dict[str, Any] = read_yaml(source)
        where, base = str(source), Path(source).resolve().parent
        data.setdefault("name", Path(source).stem)
    else:
        data, where = dict(source), "agent config"
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(AgentConfig, data, where)
    if cfg.kind not in PARAMS:
        raise MosgymError(f"{where}: kind {cfg.kind!r} unknown (valid: {', '.join(PARAMS)})")
    cfg.params = from_dict(PARAMS[cfg.kind], cfg.params, f"{where}.params")
    if cfg.kind == "sb3-policy":
        cfg.params.path = _resolve_path(cfg.params.path, base)
    if cfg.kind == "sb3" and cfg.params.resume_from:
        cfg.params.resume_from = _resolve_path(cfg.params.resume_from, base)
    if cfg.kind == "sb3" and cfg.params.save_to and base is not None:
        cfg.params.save_to = str(base / cfg.params.save_to)  # an absolute path stays itself
    native = native_action_kind(cfg)
    if cfg.action_kind is None:
        cfg.action_kind = native
    elif cfg.action_kind not in ACTION_KINDS:
        raise MosgymError(
            f"{where}: action_kind {cfg.action_kind!r} unknown (valid: continuous, discrete)"
        )
    elif native not in ("any", cfg.action_kind):
        raise MosgymError(
            f"{where}: action_kind {cfg.action_kind!r}, but this agent only supports {native} "
            "actions"
        )
    return cfg


def make_agent(cfg: AgentConfig) -> Agent:
    """Build the agent a (loaded) config describes."""
    if cfg.kind == "mos":
        agent: Any = MosAgent(cfg.name, cfg.params)
    elif cfg.kind == "static":
        agent = StaticAgent(cfg.name, cfg.params)
    elif cfg.kind == "odm":
        agent = ODMAgent(cfg.name, cfg.params)
    elif cfg.kind == "sb3":
        agent = SB3Agent(cfg.name, cfg.params)
    elif cfg.kind == "sb3-policy":
        agent = SB3PolicyAgent(cfg.name, cfg.params)
    else:
        raise MosgymError(f"agent {cfg.name}: kind {cfg.kind!r} unknown")
    if cfg.action_kind in ("continuous", "discrete"):
        agent.action_kind = cfg.action_kind  # forced (or native): checked against the env
    return agent


def check_compatible(agent: Agent | AgentConfig, env_action_kind: str) -> None:
    """MosgymError unless the agent can act on an env with `env_action_kind` actions."""
    kind = agent.action_kind or "any"
    if kind not in ("any", env_action_kind):
        raise MosgymError(
            f"agent {agent.name} needs {kind} actions but the env has {env_action_kind} ones; "
            f"set the env's action.kind={kind} (e.g. --set action.kind={kind})"
        )


def list_agent_configs(folder: str | Path) -> list[Path]:
    """The agent YAML files in `folder`, sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise MosgymError(f"{d}: agent config folder not found")
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])
