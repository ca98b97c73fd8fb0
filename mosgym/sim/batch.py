"""Many MoSSim runs at once, vectorised over runs in numpy: `BatchSim` and SB3's `SimVecEnv`.

M runs of one env config step together as (M, N) arrays, with the dynamics of
mosgym.sim.dynamics (the SimLearner's), the observation layout, mixture mapping and reward
definitions of mosgym/MoSSim-v0. Two simplifications buy the speed, both exact in distribution
but not bitwise equal to M single envs: one random generator drives the whole batch, and probe
examples draw fresh difficulties instead of indexing the fixed per-example pool. Rewards are
computed from the probe statistics they need (mean embeddings: the noise of a mean of n
examples; DIFF: n per-example NLL ratios), following the formulas of mosgym.rewards, which the
tests check against `RewardComputer` on the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from mosgym.config import EnvConfig, load_env_config
from mosgym.errors import MosgymError
from mosgym.rewards import RewardComputer
from mosgym.sim.dynamics import advance_exposure, base_loss, overfit_gap, progress
from mosgym.sim.learner import SimLearner

_MIN_NLL = 1e-4


def _cosine_rewards(z: np.ndarray, target: int | None) -> np.ndarray:
    """(M, N) COSSIM from (M, N, H) dataset embeddings: mean cosine, or cosine to the target."""
    unit = z / np.linalg.norm(z, axis=2, keepdims=True)
    cos = unit @ unit.transpose(0, 2, 1)
    return cos.mean(axis=2) if target is None else cos[:, :, target]


class BatchSim:
    """M simulated fine-tuning runs of one env config, stepped together (auto-reset)."""

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | EnvConfig | None,
        n_envs: int,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        cfg = load_env_config(config, **kwargs)
        cfg.learner = "sim"
        where = str(config) if isinstance(config, str | Path) else "env config"
        self.config = cfg
        self.sim = SimLearner.from_config(cfg, where=where)  # parses params, fixes geometry
        self.rewards = RewardComputer(cfg.reward, self.sim.skill_names, cfg.train.probe_size)
        self.n_envs, self.n = n_envs, len(self.sim.skill_names)
        self.total_steps, self.interval = cfg.train.total_steps, cfg.train.interval
        if self.total_steps % self.interval:
            raise MosgymError("train.total_steps must be a multiple of train.interval")
        self.sizes = self.sim.train_sizes.astype(np.float64)
        pools = np.array([len(d) for d in self.sim._difficulty])  # the learner's probe pools
        self.probe_n = np.minimum(cfg.train.probe_size, pools)
        self.rng = np.random.default_rng(seed)
        self.reset_all()

    # ------------------------------------------------------------------------------ state
    def reset_all(self) -> np.ndarray:
        """Reset every run; returns (M, 4N + 1) observations."""
        return self._reset(np.ones(self.n_envs, dtype=bool))

    def _reset(self, mask: np.ndarray) -> np.ndarray:
        m, n = self.n_envs, self.n
        if not hasattr(self, "exposure"):
            self.exposure = np.zeros((m, n))
            self.consumed = np.zeros((m, n), dtype=np.int64)
            self.tokens = np.zeros((m, n), dtype=np.int64)
            self.step_count = np.zeros(m, dtype=np.int64)
            self.mixture = np.full((m, n), 1.0 / n)
            self.smoothed = np.ones((m, n))
            self.last_reward = np.zeros((m, n))
            self.has_prev = np.zeros(m, dtype=bool)
            self.dev = np.tile(self.sim._init, (m, 1))
        self.exposure[mask] = 0.0
        self.consumed[mask] = 0
        self.tokens[mask] = 0
        self.step_count[mask] = 0
        self.mixture[mask] = 1.0 / n
        self.smoothed[mask] = 1.0
        self.last_reward[mask] = 0.0
        self.has_prev[mask] = False
        self.dev[mask] = self.sim._init
        return self.observations()

    def observations(self) -> np.ndarray:
        """(M, 4N + 1) float32, the layout of MixtureOfSkillsEnv."""
        parts = [
            self.dev / self.sim._init,
            self.mixture,
            self.consumed / self.sizes,
            self.last_reward,
            (self.step_count / self.total_steps)[:, None],
        ]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.sim
        base = base_loss(
            self.exposure, s._init, s._floor, s._rate, s._exp,
            s._general, self.consumed.sum(axis=1, keepdims=True),
        )  # fmt: skip
        gap = overfit_gap(self.consumed, self.sizes, s._overfit, s._ofe)
        return base + gap, base * np.exp(-gap / base), base

    # ------------------------------------------------------------------------------ step
    def mixtures(self, actions: np.ndarray) -> np.ndarray:
        """(M, N) mixtures from (M, N) continuous or (M,) discrete actions."""
        a = self.config.action
        if a.kind == "continuous":
            logits = np.clip(np.asarray(actions, np.float64).reshape(self.n_envs, self.n), -1, 1)
            logits = logits * a.logit_scale
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = z / z.sum(axis=1, keepdims=True)
        else:
            p = np.eye(self.n)[np.asarray(actions, np.int64).reshape(self.n_envs)]
        return (1.0 - self.n * a.floor) * p + a.floor

    def _train(self, p: np.ndarray) -> np.ndarray:
        """Advance every run one interval; returns (M, N) mean training loss (NaN if not drawn)."""
        s, t = self.sim, self.config.train
        if t.sampling == "per_batch":
            counts = self.rng.multinomial(self.interval, p) * t.batch_size
        else:
            counts = self.rng.multinomial(self.interval * t.batch_size, p)
        train0 = self._levels()[1]
        self.exposure = advance_exposure(
            self.exposure, counts, self.interval, s._transfer, s._forget, s._rate
        )
        self.consumed += counts
        self.tokens += counts * s._tpe
        self.step_count += self.interval
        train1 = self._levels()[1]
        mid = (train0 + train1) / 2.0
        sd = mid * s.params.example_spread + s.params.noise
        noise = sd / np.sqrt(np.maximum(counts, 1)) * self.rng.standard_normal(counts.shape)
        return np.where(counts > 0, np.maximum(mid + noise, 0.0), np.nan)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """One env step of every run: (obs, reward (M,), terminated (M,), info arrays).

        Finished runs are reset; `obs` then holds their first observation and
        info["final_observation"] (M, 4N + 1) the last one (SB3's VecEnv convention).
        """
        p = self.mixtures(actions)
        train_loss = self._train(p)
        prev_dev = self.dev
        self.dev = self._levels()[0]
        raw = self._raw_rewards(train_loss, prev_dev)
        raw = self._fill(raw)
        beta = self.config.reward.ema_beta
        if self.config.reward.ema:
            smoothed = beta * raw + (1.0 - beta) * self.smoothed
        else:
            smoothed = raw
        self.smoothed, self.has_prev, self.mixture = smoothed, np.ones(self.n_envs, bool), p
        self.last_reward = smoothed.copy()  # reset() zeroes rows in place: no aliasing
        reward = (p * smoothed).sum(axis=1)
        done = self.step_count >= self.total_steps
        info = {
            "mixture": p,
            "skill_rewards": smoothed.copy(),
            "raw_skill_rewards": raw,
            "dev_loss": self.dev.copy(),
            "train_loss": train_loss,
            "examples_seen": self.consumed.copy(),
        }
        obs = self.observations()
        if done.any():
            info["final_observation"] = obs.copy()
            obs = self._reset(done)
        return obs, reward, done, info

    def _fill(self, raw: np.ndarray) -> np.ndarray:
        """No NaN reaches an agent: previous smoothed value, else the row's finite mean, else 1."""
        bad = ~np.isfinite(raw)
        if not bad.any():
            return raw
        with np.errstate(invalid="ignore"):
            row_mean = np.nanmean(np.where(bad, np.nan, raw), axis=1, keepdims=True)
        fallback = np.where(np.isfinite(row_mean), row_mean, 1.0)
        prev = np.where(self.has_prev[:, None], self.smoothed, np.nan)
        fill = np.where(np.isfinite(prev), prev, fallback)
        return np.where(bad, fill, raw)

    # ---------------------------------------------------------------------------- rewards
    def _raw_rewards(self, train_loss: np.ndarray, prev_dev: np.ndarray) -> np.ndarray:
        r, kind, s = self.config.reward, self.config.reward.type, self.sim
        target = self.rewards.target
        if kind == "cossim":
            out = _cosine_rewards(self._probe_embeddings(), target)
        elif kind == "diff":
            out = self._diff()
            if target is not None:
                out[:, target] *= 2.0
        elif kind == "multidds":
            out = self._gradient_alignment(target)
        elif kind == "multiuat":
            sd = s.params.noise / np.sqrt(self.probe_n * max(r.uat_samples, 1))
            out = np.maximum(self.dev + sd * self.rng.standard_normal(self.dev.shape), 0.0)
        elif kind == "train_loss":
            out = train_loss.copy()
        elif kind == "learning_progress":
            out = prev_dev - self.dev
        elif kind == "mean_progress":
            out = np.repeat((prev_dev - self.dev).mean(axis=1, keepdims=True), self.dev.shape[1], 1)
        elif kind == "excess_loss":
            out = self.dev - s._init
        elif kind == "none":  # agents that ignore rewards (static mixtures)
            out = np.zeros_like(self.dev)
        else:
            raise MosgymError(f"reward.type: unknown value {kind!r}")
        return out

    def _gradient_alignment(self, target: int | None) -> np.ndarray:
        """(M, N) MultiDDS, as SimLearner.gradient_alignment for every run."""
        s, n_ex = self.sim, self.config.train.probe_size
        dev, train, _ = self._levels()
        g_dirs = s._grad_dirs  # (N, G)
        scale = np.maximum(train - s._floor, 1e-6)  # (M, N)
        g = g_dirs[None] * scale[..., None]
        sd = s.params.grad_noise * scale[..., None] / np.sqrt(max(n_ex, 1) * g_dirs.shape[1])
        g = g + sd * self.rng.standard_normal(g.shape)
        w = np.maximum(dev - s._floor, 1e-6)
        if target is not None:
            w = np.where(np.arange(self.n) == target, w, 0.0)
        dev_g = w @ g_dirs  # (M, G)
        norm = np.linalg.norm(dev_g, axis=1, keepdims=True)
        sd_dev = s.params.grad_noise * norm / np.sqrt(max(n_ex, 1) * self.n * g_dirs.shape[1])
        dev_g = dev_g + sd_dev * self.rng.standard_normal(dev_g.shape)
        num = np.einsum("mig,mg->mi", g, dev_g)
        return num / (np.linalg.norm(g, axis=2) * np.linalg.norm(dev_g, axis=1, keepdims=True))

    def _probe_embeddings(self) -> np.ndarray:
        """(M, N, H) dataset embeddings: skill means plus the noise of a mean of n examples."""
        s = self.sim
        prog = progress(self._levels()[2], s._init, s._floor)
        shift = np.einsum("ij,mj,jh->mih", s._transfer, prog, s._drift_dirs)
        means = s._common + s._mu + s.params.embed_drift * shift
        h = s.params.embed_dim
        sd = s.params.embed_noise / np.sqrt(h) / np.sqrt(self.probe_n)[None, :, None]
        return means + sd * self.rng.standard_normal(means.shape)

    def _diff(self) -> np.ndarray:
        """(M, N) DIFF: mean over n probe examples of exp(nll - init_nll) (or sequence NLLs)."""
        s, prm = self.sim, self.sim.params
        dev, train, _ = self._levels()
        level = train if s._split == "train" else dev
        k = int(self.probe_n.max())
        shape = (self.n_envs, self.n, k)
        d = np.exp(prm.example_spread * self.rng.standard_normal(shape) - prm.example_spread**2 / 2)
        nll = np.maximum(
            level[..., None] * d + prm.noise * self.rng.standard_normal(shape), _MIN_NLL
        )
        delta = nll - s._init[None, :, None] * d
        if self.config.reward.diff_scope == "sequence":
            delta = delta * s._rfrac[None, :, None]
        keep = np.arange(k)[None, :] < self.probe_n[:, None]
        return (np.exp(delta) * keep).sum(axis=2) / self.probe_n


class InProcessVecEnv(VecEnv):
    """What SB3's VecEnv asks for and a batched simulator in one process does not have: no
    subprocesses to release, no per-env wrappers, methods or images. Subclasses step and reset."""

    _actions: np.ndarray | None = None

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def close(self) -> None:
        """Nothing to release."""

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        raise MosgymError(f"{type(self).__name__} has no per-env method '{method_name}'")

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs


class SimVecEnv(InProcessVecEnv):
    """SB3 VecEnv over a `BatchSim`: n_envs MoSSim runs in one process, no subprocesses."""

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | EnvConfig | None,
        n_envs: int = 8,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.batch = BatchSim(config, n_envs, seed, **kwargs)
        n = self.batch.n
        if self.batch.config.action.kind == "continuous":
            action_space: spaces.Space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            action_space = spaces.Discrete(n)
        low = np.concatenate([np.zeros(3 * n), np.full(n, -np.inf), [0.0]]).astype(np.float32)
        high = np.concatenate([np.full(n, np.inf), np.ones(n), np.full(2 * n, np.inf), [1.0]])
        obs_space = spaces.Box(low, high.astype(np.float32), dtype=np.float32)
        super().__init__(n_envs, obs_space, action_space)
        self._actions: np.ndarray | None = None
        self._episode_return = np.zeros(n_envs)
        self._episode_len = np.zeros(n_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if any(s is not None for s in self._seeds) else None
        if seed is not None:
            self.batch.rng = np.random.default_rng(seed)
        self._reset_seeds()
        self._episode_return[:] = 0.0
        self._episode_len[:] = 0
        return self.batch.reset_all()

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        assert self._actions is not None, "step_async first"
        obs, reward, done, info = self.batch.step(self._actions)
        self._episode_return += reward
        self._episode_len += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i] = {
                "terminal_observation": info["final_observation"][i],
                "TimeLimit.truncated": False,
                "episode": {"r": float(self._episode_return[i]), "l": int(self._episode_len[i])},
            }
            self._episode_return[i] = 0.0
            self._episode_len[i] = 0
        return obs, reward.astype(np.float32), done, infos

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.batch, attr_name, None)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.batch, attr_name, value)
