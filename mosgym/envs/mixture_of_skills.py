"""The MixtureOfSkills environment: data mixing for LLM fine-tuning as a Gymnasium env."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mosgym.config import EnvConfig, load_env_config
from mosgym.envs.mixing import action_to_mixture
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.learner import distributed
from mosgym.learner.base import Learner
from mosgym.rewards import RewardComputer

log = logging.getLogger(__name__)

N_SKILL_FEATURES = 4  # dev-loss ratio, weight, epochs consumed, last reward


def build_learner(cfg: EnvConfig, seed: int = 0) -> Learner:
    """The learner a config names: a transformers LM ('hf') or the simulator ('sim')."""
    if cfg.learner == "hf":
        from mosgym.data import default_skill_configs, load_skills
        from mosgym.learner.hf import HFLearner
        from mosgym.learner.model import load_model

        distributed.init()  # under torchrun: join the process group (a no-op otherwise)
        # The initial model depends on data_seed only: every run seed fine-tunes the same
        # starting point, as with a pretrained checkpoint (and every rank builds the same one).
        loaded = load_model(cfg.model, seed=cfg.data_seed)
        skill_cfgs = cfg.skills or default_skill_configs()
        with distributed.main_first():  # rank 0 fills the tokenization cache the others read
            skills = load_skills(
                skill_cfgs, loaded.tokenizer, cfg.train.max_length, cfg.data_seed, cfg.cache_dir,
                short_answer_tokens=cfg.train.eval_max_new_tokens,
            )  # fmt: skip
        return HFLearner(skills, loaded, cfg.train, seed=seed)
    if cfg.learner == "sim":
        from mosgym.sim.learner import SimLearner

        return SimLearner.from_config(cfg, seed=seed)
    raise MosgymError(f"learner: unknown value {cfg.learner!r} (valid: 'hf', 'sim')")


def observation_bounds(cfg: EnvConfig, train_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 (4N + 1,) bounds of the observation; see the env's docstring."""
    n, t = len(train_sizes), cfg.train
    epochs = t.total_steps * t.batch_size / np.maximum(np.asarray(train_sizes, np.float64), 1)
    kind = cfg.reward.type
    reward = (-1.0, 1.0) if kind in ("cossim", "none") else (-np.inf, np.inf)
    if kind in ("diff", "train_loss"):
        reward = (0.0, np.inf)
    low = np.concatenate([np.zeros(3 * n), np.full(n, reward[0]), [0.0]])
    high = np.concatenate([np.full(n, np.inf), np.ones(n), epochs, np.full(n, reward[1]), [1.0]])
    return low.astype(np.float32), high.astype(np.float32)


def _finite_at_least(low: float) -> Callable[[float], bool]:
    return lambda v: math.isfinite(v) and v >= low


# (dotted key, test, what is required): numbers no learner can run with, caught before any
# model or data is built (the layers below check names and shapes).
_VALUE_CHECKS: list[tuple[str, Callable[[float], bool], str]] = [
    ("train.lr", _finite_at_least(0.0), "a finite number >= 0"),
    ("train.weight_decay", _finite_at_least(0.0), "a finite number >= 0"),
    ("train.warmup_ratio", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    ("train.max_grad_norm", _finite_at_least(0.0), "a finite number >= 0 (0: no clipping)"),
    ("train.probe_size", lambda v: v >= 1, ">= 1"),
    ("train.n_eval_generate", lambda v: v >= 0, ">= 0"),
    ("train.eval_max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("action.logit_scale", lambda v: 0 < v <= 50, "in (0, 50] (50: weights may differ e^100-fold)"),
    ("reward.probe_size", lambda v: v is None or v >= 1, ">= 1 (or null)"),
    ("action.floor", lambda v: 0.0 <= v < 1.0, "in [0, 1/N]"),
    ("data_seed", lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)"),
]
_TINY_MODEL_CHECKS: list[tuple[str, Callable[[float], bool], str]] = [
    ("model.hidden_size", lambda v: v >= 1, ">= 1"),
    ("model.num_layers", lambda v: v >= 1, ">= 1"),
    ("model.num_heads", lambda v: v >= 1, ">= 1"),
    ("model.intermediate_size", lambda v: v >= 1, ">= 1"),
    ("model.dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
]


def _get(cfg: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        cfg = getattr(cfg, key)
    return cfg


def check_config(cfg: EnvConfig) -> None:
    """Everything about a config that can be checked before anything is built."""
    check_budget(cfg)
    distributed.check_parallel(cfg.train)
    if cfg.model.compile and cfg.train.parallel == "fsdp" and distributed.env_world_size() > 1:
        raise MosgymError(
            "model.compile with train.parallel=fsdp is not supported (the model is compiled "
            "before it is sharded); set model.compile=false or train.parallel=ddp"
        )
    if not cfg.name.strip():
        raise MosgymError("name: must be a non-empty string (it names the MLflow experiment)")
    checks = list(_VALUE_CHECKS)
    if cfg.learner == "hf" and cfg.model.name == "tiny":
        checks += _TINY_MODEL_CHECKS
    elif cfg.learner == "hf":
        from mosgym.learner.model import check_local_path

        check_local_path(cfg.model.name)
    for key, ok, need in checks:
        value = _get(cfg, key)
        if not ok(value):
            raise MosgymError(f"{key}: must be {need}, got {value!r}")


def check_budget(cfg: EnvConfig) -> None:
    """The episode's shape must be consistent before anything is built."""
    t = cfg.train
    if t.total_steps <= 0 or t.interval <= 0:
        raise MosgymError("train.total_steps and train.interval must be positive integers")
    if t.total_steps % t.interval:
        raise MosgymError(
            f"train.total_steps ({t.total_steps}) must be a multiple of train.interval "
            f"({t.interval}): an episode is total_steps / interval env steps"
        )
    if cfg.action.kind not in ("continuous", "discrete"):
        raise MosgymError(
            f"action.kind: unknown value {cfg.action.kind!r} (valid: 'continuous', 'discrete')"
        )


class MixtureOfSkillsEnv(gym.Env[np.ndarray, np.ndarray | int]):
    """Choose how often to sample each fine-tuning dataset while a causal LM fine-tunes.

    ## Description
    An episode is one fine-tuning run of T optimizer steps (``train.total_steps``) on N datasets
    ("skills"). Every S steps (``train.interval``; the paper's scorer interval, 100 there) the
    agent sets the mixture, the learner performs S real AdamW updates drawing data from it, and
    the env computes the configured Mixture-of-Skills reward (Wu et al., EMNLP 2024) from
    batched probes of the model. One episode has T / S env steps.

    ## Action Space
    ``action.kind: continuous``: ``Box(-1, 1, (N,), float32)``, read as logits: the mixture is
    ``softmax(action * action.logit_scale)``, then mixed with the floor as
    ``(1 - N * floor) * p + floor``. ``action.kind: discrete``: ``Discrete(N)``, train only on
    the chosen skill for the next S steps (floor applies too). NaN/inf or wrongly shaped
    actions raise MosgymError.

    ## Observation Space
    ``Box(float32, (4N + 1,))``: for every skill, in blocks of N, the dev loss divided by the
    initial model's, the current mixture weight, the epochs of its training split consumed
    (examples drawn / train size), and the last reward R(i); then training progress step / T.
    Bounds are finite where the values are: weights and progress in [0, 1]; epochs in
    [0, T * B / train size] (at most B examples are drawn per optimizer step); COSSIM rewards
    (and the zeros of reward 'none') in [-1, 1]. The dev-loss ratio is bounded only below, by
    0: a diverging run's loss has no ceiling, and clipping it would hide exactly that. DIFF
    (a perplexity ratio) and the training-loss reward are in [0, inf); the other rewards are
    unbounded. So Gymnasium's checker warns about the infinite bounds; they are true bounds.

    ## Rewards
    The scalar reward is ``sum_i p_i R(i)`` with p the mixture used and R the per-skill reward
    of ``reward.type`` (cossim, diff, multidds, multiuat, train_loss, learning_progress,
    mean_progress, excess_loss), EMA-smoothed when ``reward.ema``, MoSpec when ``reward.target``
    is set. The MoS scorer learns from the vector, ``info["skill_rewards"]``.

    ## Starting State
    ``reset(seed)`` restores the initial weights, optimizer, schedule and sampler exactly and
    reseeds the data sampling; the first observation has dev-loss ratios 1, a uniform mixture,
    nothing consumed and last rewards 0.

    ## Episode End
    Terminates after T optimizer steps (T / S env steps). The last step's info carries
    ``final_eval`` (per-skill dev loss and exact-match accuracy). Never truncates itself.

    ## Info
    Every step: ``mixture``, ``skill_rewards``, ``raw_skill_rewards``, ``dev_loss``,
    ``train_loss`` (per skill; the last value where not drawn in this step),
    ``train_examples`` (examples drawn per skill in this step), ``step_loss``, ``examples_seen``,
    ``tokens_seen``, ``step``, ``probe_skipped``, ``reward_fallback`` (per skill: the reward
    could not be computed and was filled in), ``skill_names``. reset(): ``skill_names``,
    ``dev_loss``, ``mixture``, ``train_sizes``.

    ## Arguments
    ``gym.make("mosgym/MixtureOfSkills-v0", config=None, overrides=None, **top_level_keys)``:
    ``config`` is a YAML path, a config name as on the command line (``"skills-tiny"``: the
    file in ./envs or the repo's envs/), a mapping or an EnvConfig (none: the embedded
    default, a tiny Llama on the built-in skills, offline; for ``mosgym/MoSSim-v0`` the
    calibrated ``sim-skills-tiny``); ``overrides`` are ``"train.total_steps=200"``
    strings; keyword arguments replace or merge top-level config keys, e.g.
    ``reward={"type": "diff", "ema": True}``. ``learner=`` passes a ready Learner instead.

    ## Version History
    * v0: initial release.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] | EnvConfig | None = None,
        overrides: list[str] | None = None,
        learner: Learner | None = None,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        if render_mode is not None:
            raise MosgymError(f"render_mode {render_mode!r} is not supported (none is)")
        self.config = load_env_config(config, overrides, **kwargs)
        check_config(self.config)
        self.learner = learner if learner is not None else build_learner(self.config)
        self.skill_names = list(self.learner.skill_names)
        n = len(self.skill_names)
        if self.config.action.floor * n > 1.0:
            raise MosgymError(
                f"action.floor: must lie in [0, 1/N] = [0, {1.0 / n:.4g}] for N={n} skills, got "
                f"{self.config.action.floor}"
            )
        self.rewards = RewardComputer(
            self.config.reward, self.skill_names, self.config.train.probe_size
        )
        if self.config.action.kind == "continuous":
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            self.action_space = spaces.Discrete(n)
        low, high = observation_bounds(self.config, np.asarray(self.learner.train_sizes))
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._init_dev: np.ndarray | None = None
        self._dev = np.ones(n)
        self._mixture = np.full(n, 1.0 / n)
        self._last_reward = np.zeros(n)
        self._train_loss = np.ones(n)

    # ---------------------------------------------------------------------------------------
    @property
    def n_env_steps(self) -> int:
        """Env steps in one episode (T / S)."""
        return self.config.train.total_steps // self.config.train.interval

    @property
    def spec_info(self) -> EnvSpec:
        """What an agent may know before acting."""
        return EnvSpec(
            skill_names=list(self.skill_names),
            train_sizes=np.asarray(self.learner.train_sizes).copy(),
            action_kind=self.config.action.kind,
            n_env_steps=self.n_env_steps,
            interval=self.config.train.interval,
            logit_scale=self.config.action.logit_scale,
            floor=self.config.action.floor,
        )

    def _obs(self) -> np.ndarray:
        assert self._init_dev is not None
        epochs = self.learner.consumed / np.maximum(self.learner.train_sizes, 1)
        progress = self.learner.step / self.config.train.total_steps
        parts = [self._dev / self._init_dev, self._mixture, epochs, self._last_reward, [progress]]
        return np.concatenate(parts).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # The learner's own seed comes from the env's RNG, so reset(seed=s) fixes the whole
        # episode and later seedless resets give new but reproducible episodes.
        self.learner.reset(int(self.np_random.integers(2**31 - 1)))
        self.rewards.reset()
        if self._init_dev is None:  # the initial model never changes: measure it once
            self._init_dev = np.asarray(self.learner.dev_loss(), dtype=np.float64)
        n = len(self.skill_names)
        self._dev = self._init_dev.copy()
        self._mixture = np.full(n, 1.0 / n)
        self._last_reward = np.zeros(n)
        self._train_loss = self._init_dev.copy()
        info = {
            "skill_names": list(self.skill_names),
            "dev_loss": self._dev.copy(),
            "mixture": self._mixture.copy(),
            "train_sizes": np.asarray(self.learner.train_sizes).copy(),
        }
        return self._obs(), info

    def step(self, action: np.ndarray | int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._init_dev is None:
            raise MosgymError("call reset() before step()")
        cfg = self.config
        if self.learner.step >= cfg.train.total_steps:
            raise MosgymError("the episode has ended (terminated=True); call reset()")
        n = len(self.skill_names)
        mixture = action_to_mixture(  # validates the action
            action, cfg.action.kind, n, cfg.action.logit_scale, cfg.action.floor
        )
        stats = self.learner.train(mixture, cfg.train.interval)
        terminated = self.learner.step >= cfg.train.total_steps
        final = self.learner.evaluate(generate=True) if terminated else None
        prev_dev = self._dev
        dev = np.asarray(final.dev_loss if final else self.learner.dev_loss(), dtype=np.float64)
        result = self.rewards.compute(self.learner, stats, dev, prev_dev, self._init_dev)
        fresh = np.asarray(stats.examples) > 0
        step_losses = np.asarray(stats.step_losses)
        self._train_loss = np.where(fresh, stats.mean_loss, self._train_loss)
        self._dev, self._mixture = dev, mixture
        self._last_reward = np.asarray(result.smoothed, dtype=np.float64)
        info: dict[str, Any] = {
            "mixture": mixture.copy(),
            "skill_rewards": self._last_reward.copy(),
            "raw_skill_rewards": np.asarray(result.raw, dtype=np.float64),
            "dev_loss": dev.copy(),
            # A skill not drawn in this interval keeps its last training loss (NaN would make
            # infos incomparable); train_examples says which values are fresh.
            "train_loss": self._train_loss.copy(),
            "train_examples": np.asarray(stats.examples).copy(),
            "step_loss": float(step_losses.sum() / step_losses.size),  # np.mean, less overhead
            "examples_seen": np.asarray(self.learner.consumed).copy(),
            "tokens_seen": np.asarray(self.learner.tokens_seen).copy(),
            "step": int(self.learner.step),
            "probe_skipped": int(result.probe_skipped),
            "reward_fallback": np.asarray(result.fallback, dtype=bool).copy(),
            "skill_names": list(self.skill_names),
        }
        if final is not None:
            info["final_eval"] = {"dev_loss": dev.copy(), "accuracy": np.asarray(final.accuracy)}
        reward = float(mixture @ self._last_reward)
        return self._obs(), reward, terminated, False, info

    # ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this episode exactly (checkpoints)."""
        return {
            "learner": self.learner.state_dict(),
            "rewards": self.rewards.state_dict(),
            "init_dev": None if self._init_dev is None else self._init_dev.tolist(),
            "dev": self._dev.tolist(),
            "mixture": self._mixture.tolist(),
            "last_reward": self._last_reward.tolist(),
            "train_loss": self._train_loss.tolist(),
            "np_random": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.learner.load_state_dict(state["learner"])
        self.rewards.load_state_dict(state["rewards"])
        self._init_dev = None if state["init_dev"] is None else np.asarray(state["init_dev"])
        self._dev = np.asarray(state["dev"])
        self._mixture = np.asarray(state["mixture"])
        self._last_reward = np.asarray(state["last_reward"])
        self._train_loss = np.asarray(state["train_loss"])
        self.np_random.bit_generator.state = state["np_random"]
