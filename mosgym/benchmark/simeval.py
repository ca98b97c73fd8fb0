"""Scores on held-out simulator episodes: a trained policy, or an agent that learns as it goes.

Every algorithm is scored on the same episodes: `episodes` simulated runs stepped together from
a generator seeded by `seed`, a stream no training run uses (training runs use their seed,
tuning its own held-out stream). The score is the final mean dev loss over skills (lower is
better), the quantity the real runs report as `final/dev_loss_mean`; the mean episode return is
kept beside it.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from mosgym.agents.registry import AgentConfig, make_agent
from mosgym.config import EnvConfig
from mosgym.envs.spec import EnvSpec
from mosgym.experiment.sim2real import SimScore, cfg_skill_names, score_on_sim
from mosgym.sim.batch import BatchSim

EVAL_SEED = 1_000_003
"""The benchmark's held-out simulator episodes (sim2real's default scoring stream)."""
TUNE_SEED = 2_000_003
"""Tuning scores on these instead, so the benchmark's episodes are never tuned on."""


def score_policy(cfg: EnvConfig, model: Any, episodes: int, seed: int = EVAL_SEED) -> SimScore:
    """A trained SB3 model acting deterministically on `episodes` held-out simulated runs."""
    return score_on_sim(cfg, lambda obs: model.predict(obs, deterministic=True)[0], episodes, seed)


def batch_spec(batch: BatchSim) -> EnvSpec:
    """What an agent may know about the batch's env (as MixtureOfSkillsEnv.spec_info)."""
    cfg = batch.config
    return EnvSpec(
        skill_names=cfg_skill_names(cfg),
        train_sizes=batch.sizes.astype(np.int64),
        action_kind=cfg.action.kind,
        n_env_steps=cfg.train.total_steps // cfg.train.interval,
        interval=cfg.train.interval,
        logit_scale=cfg.action.logit_scale,
        floor=cfg.action.floor,
    )


def score_agent(
    cfg: EnvConfig, agent_cfg: AgentConfig, episodes: int, seed: int = EVAL_SEED
) -> SimScore:
    """An act/observe agent (MoS, ODM, a static mixture): one instance per simulated run, each
    acting on its own run and learning from its own transitions, as in `mosgym run`."""
    batch = BatchSim(cfg, episodes, seed=seed)
    spec = batch_spec(batch)
    agents = _set_up_agents(agent_cfg, spec, episodes, seed)
    obs = batch.reset_all()
    for i, agent in enumerate(agents):
        agent.reset(obs[i], {})
    ret = np.zeros(episodes)
    done = np.zeros(episodes, dtype=bool)
    info: dict[str, Any] = {}
    for _ in range(spec.n_env_steps):
        acts = [agent.act(obs[i]) for i, agent in enumerate(agents)]
        actions = np.asarray(acts, dtype=np.int64 if spec.action_kind == "discrete" else None)
        obs, reward, done, info = batch.step(actions)
        ret += reward
        after = info.get("final_observation", obs)
        for i, agent in enumerate(agents):
            row = {k: info[k][i] for k in ("mixture", "skill_rewards", "dev_loss", "train_loss")}
            agent.observe(acts[i], float(reward[i]), after[i], bool(done[i]), False, row)
    assert done.all(), "every run ends after total_steps / interval env steps"
    return SimScore(float(ret.mean()), float(info["dev_loss"].mean()))


def _set_up_agents(agent_cfg: AgentConfig, spec: EnvSpec, n: int, seed: int) -> list[Any]:
    """n agents, set up with seeds seed, seed + 1, ...

    With continuous actions and no seeded initialisation (all but the MLP scorer), `setup` does
    not depend on the seed, so one agent is set up and copied: MoS's warm-up to a PROP prior
    takes ~10^4 Adam steps, which would otherwise be repeated for every episode.
    """
    first = make_agent(agent_cfg)
    first.setup(spec, seed)
    params = agent_cfg.params
    seedless = spec.action_kind == "continuous" and getattr(params, "scorer", "logits") == "logits"
    if seedless:
        return [first, *(copy.deepcopy(first) for _ in range(n - 1))]
    rest = [make_agent(agent_cfg) for _ in range(n - 1)]
    for i, agent in enumerate(rest, 1):
        agent.setup(spec, seed + i)
    return [first, *rest]
