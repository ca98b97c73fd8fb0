"""Domain randomisation: simulators whose calibrated parameters are drawn around the fit.

The calibration (mosgym.sim.calibrate) stores a point estimate and, in its report, the per-skill
error of its loss predictions; it stores no parameter uncertainty (no covariance, no
per-parameter interval). So the spread is a stated relative one: every learned dynamics
parameter is multiplied by exp(spread * z), z ~ N(0, 1) drawn per entry from a generator seeded
by the draw's seed (same seed, same simulator; another seed, another one). Left alone: the
initial losses (measured at step 0, not fitted), the transfer diagonal (1 by definition), the
data geometry (tokens, response shares) and the probe and embedding noise (they set the rewards'
noise, not the learning dynamics). Shares and forgetting rates are clipped into their ranges and
floor losses kept below the initial ones, so every draw is a valid simulator.

`RandomizedSimVecEnv` trains on such simulators: n_envs runs in G groups, each group a
`SimVecEnv` of its own draw, redrawn whenever its runs end (all runs of a group end together:
an episode is always T / S env steps).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from mosgym.config import EnvConfig, load_env_config
from mosgym.errors import MosgymError
from mosgym.sim.batch import BatchSim, InProcessVecEnv, SimVecEnv
from mosgym.sim.params import parse_sim_params

PER_SKILL = ("floor_loss", "rate", "exponent", "general_share", "overfit", "forget")
SCALARS = ("general_rate", "general_exponent")
_STREAM = 0xD0_3A1  # keeps randomisation draws apart from every other use of the same seed


def randomized_sim_params(sim: dict[str, Any], seed: int, spread: float) -> dict[str, Any]:
    """A copy of a `sim:` block with its dynamics parameters drawn around the fit.

    Deterministic in (sim, seed, spread); spread 0 returns an equal copy.
    """
    if not 0.0 <= spread <= 1.0:
        raise MosgymError(f"--dr-spread {spread}: must be in [0, 1] (a relative log-std)")
    rng = np.random.default_rng([_STREAM, seed])
    out = copy.deepcopy(sim)

    def scale(values: Any) -> Any:
        a = np.asarray(values, dtype=np.float64)
        return (a * np.exp(spread * rng.standard_normal(a.shape))).tolist()

    for key in PER_SKILL:
        if out.get(key) is not None:
            out[key] = scale(out[key])
    for key in SCALARS:
        if out.get(key) is not None:
            out[key] = float(scale([out[key]])[0])
    t = np.asarray(out["transfer"], dtype=np.float64)
    off = ~np.eye(len(t), dtype=bool)
    t[off] = np.asarray(scale(t[off]))
    out["transfer"] = t.tolist()
    _clip(out)
    return out


def _clip(sim: dict[str, Any]) -> None:
    """Keep every drawn value inside the range parse_sim_params accepts."""
    if sim.get("general_share") is not None:
        sim["general_share"] = np.clip(sim["general_share"], 0.0, 0.99).tolist()
    if sim.get("forget") is not None:
        sim["forget"] = np.clip(sim["forget"], 0.0, 0.99).tolist()
    init = np.asarray(sim["init_loss"], dtype=np.float64)
    sim["floor_loss"] = np.minimum(np.asarray(sim["floor_loss"]), 0.95 * init).tolist()


def randomized_config(cfg: EnvConfig, seed: int, spread: float) -> EnvConfig:
    """The simulator config `cfg` with randomised parameters (validated as any sim block)."""
    if cfg.sim is None:
        raise MosgymError(f"env {cfg.name}: domain randomisation needs a simulator config")
    out = load_env_config(cfg)
    out.sim = randomized_sim_params(cfg.sim, seed, spread)
    n = len(cfg.skills) if cfg.skills else len(cfg.sim["init_loss"])
    parse_sim_params(out.sim, n, f"{cfg.name} (randomised, seed {seed})")
    return out


class RandomizedSimVecEnv(InProcessVecEnv):
    """SB3 VecEnv over G groups of simulated runs, each group on its own randomised simulator,
    redrawn at the end of every episode. Draw k of a training run with seed s uses seed
    s * 1_000_003 + k, so the same training seed sees the same sequence of simulators."""

    def __init__(
        self, cfg: EnvConfig, n_envs: int, seed: int, spread: float, groups: int = 4
    ) -> None:
        groups = max(1, min(groups, n_envs))
        sizes = [n_envs // groups + (i < n_envs % groups) for i in range(groups)]
        self.cfg, self.spread, self.seed_base = cfg, spread, seed * 1_000_003
        self.draws = 0
        self.parts = [
            SimVecEnv(self._draw(), n_envs=m, seed=seed * 7919 + i) for i, m in enumerate(sizes)
        ]
        self.bounds = np.cumsum([0, *sizes])
        first = self.parts[0]
        super().__init__(n_envs, first.observation_space, first.action_space)
        self._actions: np.ndarray | None = None

    def _draw(self) -> EnvConfig:
        self.draws += 1
        return randomized_config(self.cfg, self.seed_base + self.draws, self.spread)

    def reset(self) -> np.ndarray:
        for i, part in enumerate(self.parts):
            s = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
            if s is not None:
                part.seed(int(s) + i)
        self._reset_seeds()
        return np.concatenate([part.reset() for part in self.parts])

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        assert self._actions is not None, "step_async first"
        obs, rew, done, infos = [], [], [], []
        for i, part in enumerate(self.parts):
            o, r, d, inf = part.step(self._actions[self.bounds[i] : self.bounds[i + 1]])
            if d.all():  # the group's runs ended together: their next episode is a new draw
                rng = part.batch.rng
                part.batch = BatchSim(self._draw(), part.num_envs)
                part.batch.rng = rng  # one random stream per group across draws
            obs.append(o), rew.append(r), done.append(d), infos.extend(inf)
        return np.concatenate(obs), np.concatenate(rew), np.concatenate(done), infos

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name, None) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)
