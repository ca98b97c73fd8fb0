"""Which settings of a run become MLflow params: what a user set or would filter on.

The full resolved config stays in the run's ``config.yaml`` artifact; params are the short list
a researcher filters and compares runs by in the MLflow UI. Logged:

- always: ``env.name``, ``env.learner``, ``env.data_seed``, ``env.train.total_steps``,
  ``env.train.interval``, ``env.train.batch_size``, ``env.reward.type``, ``env.action.kind``,
  ``env.skills`` (the skill names, comma-separated, in config order), ``agent.name``,
  ``agent.kind``; on the real learner also ``env.model.name``, ``env.train.lr``,
  ``env.train.max_length`` and ``env.train.probe_size``;
- every other env setting whose value differs from the built-in default (so whatever a config
  file or ``--set`` changed), except those that do nothing for the run: the model and optimiser
  settings on the simulator, reward options of other reward types, probe settings when no
  reward is computed;
- every agent setting (``agent.params.*``) but those its other settings make idle (the MoS
  scorer's ``hidden_size`` with free logits, ``init_logit`` with the MLP).

Never logged: per-skill rows (``env.skills.N.*``), the simulator's calibrated numbers
(``env.sim.*``), null or empty values. Local paths are logged absolute and normalised.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from mosgym.config import EnvConfig, flatten

ALWAYS = (
    "name", "learner", "data_seed", "train.total_steps", "train.interval", "train.batch_size",
    "reward.type", "action.kind",
)  # fmt: skip
REAL_ALWAYS = ("model.name", "train.lr", "train.max_length", "train.probe_size")
# What the simulator ignores: it has no model, optimiser, tokenizer or decoding.
SIM_IGNORES = (
    "model.", "train.lr", "train.weight_decay", "train.warmup_ratio", "train.max_grad_norm",
    "train.fused_adamw",
    "train.max_length", "train.grad_accum", "train.group_by_length", "train.eval_batch_size",
    "train.eval_max_new_tokens", "train.n_eval_generate", "train.parallel",
)  # fmt: skip
# Reward options that only one reward type reads.
REWARD_ONLY = {"reward.diff_scope": ("diff",), "reward.uat_samples": ("multiuat",)}
NEVER = ("skills", "sim", "cache_dir")
# Agent settings that one choice of another makes idle: (kind, key, value) -> idle keys.
AGENT_IDLE = {
    ("mos", "scorer", "logits"): ("hidden_size",),
    ("mos", "scorer", "mlp"): ("init_logit",),
}


def _defaults() -> dict[str, Any]:
    return flatten(dataclasses.asdict(EnvConfig()))


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


def _relevant(key: str, env: dict[str, Any]) -> bool:
    """Whether setting `key` changes anything for this env's learner and reward."""
    reward = env.get("reward") or {}
    if env.get("learner") == "sim" and key.startswith(SIM_IGNORES):
        return False
    if key in REWARD_ONLY and reward.get("type") not in REWARD_ONLY[key]:
        return False
    if key == "reward.ema_beta" and not reward.get("ema"):
        return False
    if key.startswith("train.probe_") and reward.get("type") == "none":
        return False
    return key.split(".", 1)[0] not in NEVER


def _normalise(key: str, value: Any) -> Any:
    """Local paths absolute and normalised (a hub id such as 'Qwen/Qwen1.5-0.5B' is kept)."""
    if isinstance(value, str) and key.endswith(("path", "model.name")):
        p = Path(value).expanduser()
        if p.is_absolute() or value.startswith(".") or p.exists():
            return os.path.normpath(p.resolve())
    return value


def env_params(env: dict[str, Any]) -> dict[str, Any]:
    """The env config's params, keys prefixed 'env.'."""
    flat = flatten({k: v for k, v in env.items() if k not in NEVER})
    defaults = _defaults()
    keep = list(ALWAYS) + (list(REAL_ALWAYS) if env.get("learner") != "sim" else [])
    keep += [k for k, v in flat.items() if k in defaults and v != defaults[k]]
    keep += [k for k in flat if k not in defaults]  # keys inside dict-valued settings
    out: dict[str, Any] = {}
    for key in keep:
        value = flat.get(key)
        if key in out or _empty(value) or not (key in ALWAYS or _relevant(key, env)):
            continue
        out[key] = _normalise(key, value)
    names = [str(s["name"]) for s in env.get("skills") or []]
    if names:
        out["skills"] = ",".join(names)
    return {f"env.{k}": v for k, v in sorted(out.items())}


def agent_params(agent: dict[str, Any]) -> dict[str, Any]:
    """The agent's name, kind and settings, keys prefixed 'agent.'."""
    out: dict[str, Any] = {"agent.name": agent["name"], "agent.kind": agent["kind"]}
    if agent.get("action_kind") not in (None, "any"):  # 'any': it follows the env
        out["agent.action_kind"] = agent["action_kind"]
    params = flatten(agent.get("params") or {})
    idle = {
        key
        for (kind, k, v), keys in AGENT_IDLE.items()
        if kind == agent["kind"] and params.get(k) == v
        for key in keys
    }
    for key, value in params.items():
        if not _empty(value) and key not in idle:
            out[f"agent.params.{key}"] = _normalise(key, value)
    return out


def run_params(env: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
    """Every param of a run of `agent` on `env` (both resolved configs as plain data)."""
    return {**env_params(env), **agent_params(agent)}
