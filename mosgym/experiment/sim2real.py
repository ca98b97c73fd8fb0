"""Sim-to-real: train an SB3 policy on the calibrated simulator, deploy it on the real env.

    python -m mosgym.sim2real --env envs/sim-skills-tiny.yaml --agent agents/ppo.yaml \\
        --timesteps 200000 --out policies/ppo-sim-skills-tiny.zip --n-envs 16 --seed 0 \\
        --agent-out agents/ppo-from-sim.yaml
    python -m mosgym.run --agent agents/ppo-from-sim.yaml --env envs/skills-tiny.yaml

Training steps `SimVecEnv` (many MoSSim runs vectorised in numpy, one process), so 100k+ env
steps take minutes. The saved .zip is an ordinary SB3 model; the written agent YAML
(kind sb3-policy) loads it with a path relative to the YAML's folder and names the reward the
policy was trained with: the observation carries the last reward, so the real env must compute
the same reward type for the policy's inputs to mean what they meant in training. The real env
must also have the same skills (in the same order), interval and action mapping (logit_scale,
floor); `check_spaces` only sees the shapes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosgym.agents.registry import AgentConfig, load_agent_config
from mosgym.agents.sb3 import ALGO_ACTION_KINDS, build_kwargs, check_algo
from mosgym.config import EnvConfig, load_env_config, to_dict
from mosgym.errors import MosgymError
from mosgym.sim.batch import BatchSim, SimVecEnv

log = logging.getLogger(__name__)


@dataclass
class SimScore:
    """Mean over simulated episodes of one way of acting."""

    episode_return: float
    """Sum of the env's scalar rewards over an episode."""
    final_dev_loss: float
    """Mean over skills of the dev loss at the end of the episode (lower is better)."""


@dataclass
class Sim2RealResult:
    """What `train_on_sim` did."""

    policy_path: Path
    agent_yaml: Path | None
    timesteps: int
    train_seconds: float
    policy: SimScore
    """The trained policy acting deterministically."""
    uniform: SimScore | None
    """The uniform mixture (continuous actions of 0), for scale; None for discrete actions."""


def sim_env_config(env: str | Path | EnvConfig, agent: AgentConfig) -> EnvConfig:
    """The simulator config of `env` with the agent's reward and action kind, as `run` does."""
    cfg = load_env_config(env)
    cfg.learner = "sim"
    if agent.reward is not None:
        cfg = load_env_config(cfg, reward=to_dict(agent.reward))
    native = ALGO_ACTION_KINDS[agent.params.algo]
    kind = agent.action_kind if agent.action_kind in ("continuous", "discrete") else native
    if kind in ("continuous", "discrete"):
        cfg.action.kind = kind
    return cfg


def score_on_sim(cfg: EnvConfig, act: Any, episodes: int = 32, seed: int = 1_000_003) -> SimScore:
    """Mean return and final dev loss of `act(obs (M, 4N+1)) -> actions` over `episodes` runs."""
    batch = BatchSim(cfg, episodes, seed=seed)
    obs, ret = batch.reset_all(), np.zeros(episodes)
    for _ in range(cfg.train.total_steps // cfg.train.interval):
        obs, reward, done, info = batch.step(act(obs))
        ret += reward
    assert done.all(), "every run ends after total_steps / interval env steps"
    return SimScore(float(ret.mean()), float(info["dev_loss"].mean()))


def _agent_yaml(
    agent: AgentConfig, cfg: EnvConfig, policy: Path, out: Path, command: str
) -> dict[str, Any]:
    rel = os.path.relpath(policy.resolve(), out.resolve().parent)
    data: dict[str, Any] = {
        "name": out.stem,
        "kind": "sb3-policy",
        "reward": to_dict(cfg.reward),
        "action_kind": cfg.action.kind,
        "params": {"algo": agent.params.algo, "path": rel},
    }
    header = (
        f"# Written by: {command}\n"
        f"# A {agent.params.algo} policy trained on the simulator ({cfg.name}), frozen.\n"
        f"# Deploy on an env with these skills, in this order: {cfg_skill_names(cfg)};\n"
        f"# interval {cfg.train.interval}, action logit_scale {cfg.action.logit_scale}, "
        f"floor {cfg.action.floor}. The reward block sets the env's reward (an observation).\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return data


def cfg_skill_names(cfg: EnvConfig) -> list[str]:
    """The skill names of an env config (the built-in suite when it lists none)."""
    if cfg.skills:
        return [s.name for s in cfg.skills]
    from mosgym.data.builtin import default_skill_configs

    return [s.name for s in default_skill_configs()]


def train_on_sim(
    env: str | Path | EnvConfig,
    agent: str | Path | AgentConfig,
    timesteps: int,
    out: str | Path,
    seed: int = 0,
    n_envs: int = 16,
    agent_out: str | Path | None = None,
    agent_overrides: list[str] | None = None,
    command: str = "mosgym.sim2real",
) -> Sim2RealResult:
    """Train the agent YAML's SB3 algorithm on SimVecEnv, save it, write the sb3-policy YAML."""
    acfg = agent if isinstance(agent, AgentConfig) else load_agent_config(agent, agent_overrides)
    if acfg.kind != "sb3":
        raise MosgymError(
            f"agent {acfg.name}: sim2real trains an agent of kind 'sb3' (an SB3 algorithm), "
            f"got kind {acfg.kind!r}; pass e.g. --agent agents/ppo.yaml"
        )
    if timesteps < 1 or n_envs < 1:
        raise MosgymError(f"--timesteps and --n-envs must be >= 1, got {timesteps}, {n_envs}")
    cls = check_algo(acfg.params.algo, acfg.name)
    cfg = sim_env_config(env, acfg)
    venv = SimVecEnv(cfg, n_envs=n_envs, seed=seed)
    venv.seed(seed)
    try:
        model = cls(
            acfg.params.policy,
            venv,
            seed=seed,
            device=acfg.params.device,
            verbose=0,
            **build_kwargs(acfg.params, acfg.name),
        )
    except (ValueError, TypeError, AssertionError) as e:
        raise MosgymError(f"agent {acfg.name}: {cls.__name__} rejected its settings: {e}") from None
    start = time.perf_counter()
    model.learn(timesteps)
    seconds = time.perf_counter() - start
    policy_path = Path(out)
    if policy_path.suffix != ".zip":
        policy_path = policy_path.with_name(policy_path.name + ".zip")
    policy_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(policy_path)
    score = score_on_sim(cfg, lambda obs: model.predict(obs, deterministic=True)[0])
    uniform = None
    if cfg.action.kind == "continuous":
        n = len(cfg_skill_names(cfg))
        uniform = score_on_sim(cfg, lambda obs: np.zeros((obs.shape[0], n), np.float32))
    yaml_path = None
    if agent_out is not None:
        yaml_path = Path(agent_out)
        _agent_yaml(acfg, cfg, policy_path, yaml_path, command)
    return Sim2RealResult(policy_path, yaml_path, timesteps, seconds, score, uniform)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mosgym.sim2real",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n"
        "  mosgym sim2real --env envs/sim-skills-tiny.yaml --agent agents/ppo.yaml \\\n"
        "      --timesteps 200000 --out policies/ppo-sim-skills-tiny.zip \\\n"
        "      --agent-out agents/ppo-from-sim.yaml",
    )
    p.add_argument("--env", required=True, help="env YAML (its learner is replaced by 'sim')")
    p.add_argument("--agent", required=True, help="agent YAML of kind sb3 (e.g. agents/ppo.yaml)")
    p.add_argument("--timesteps", type=int, required=True, help="env steps of training")
    p.add_argument("--out", required=True, help="the policy .zip to write")
    p.add_argument("--agent-out", help="the sb3-policy agent YAML to write (default: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=16, help="simulated runs stepped together")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an agent key, e.g. params.hyperparams.n_steps=64",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny MLPs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    command = "python -m mosgym.sim2real " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        res = train_on_sim(
            args.env,
            args.agent,
            args.timesteps,
            args.out,
            seed=args.seed,
            n_envs=args.n_envs,
            agent_out=args.agent_out,
            agent_overrides=args.set,
            command=command,
        )
    except MosgymError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.info(
        "trained %d timesteps in %.1f s -> %s", res.timesteps, res.train_seconds, res.policy_path
    )
    log.info(
        "on the simulator (32 episodes): policy return %.4f, final dev loss %.4f",
        res.policy.episode_return,
        res.policy.final_dev_loss,
    )
    if res.uniform is not None:
        log.info(
            "uniform mixture: return %.4f, final dev loss %.4f",
            res.uniform.episode_return,
            res.uniform.final_dev_loss,
        )
    if res.agent_yaml is not None:
        log.info(
            "deploy with: python -m mosgym.run --agent %s --env <real env YAML>", res.agent_yaml
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
