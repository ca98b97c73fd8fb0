"""Stable-Baselines3 through one adapter: PPO, A2C, SAC, TD3, DQN learning online, and saved
SB3 policies acting without learning.

A learning SB3 agent cannot be driven step by step by act/observe (SB3 owns its rollout loop),
so it is a `SelfDrivingAgent`: the runner hands `learn` the env (wrapped with its recorder) and
SB3 steps it inside `model.learn`. SB3's own logger is routed to the runner's `log_metrics`.
A saved policy (a .zip from `model.save`) is a plain `Agent`: act = `model.predict(obs,
deterministic=True)`; that is how a policy trained on the simulator is deployed. Saved files are
read by `mosgym.agents.policy_file`, which never unpickles them (SB3's `load` does, and so runs
any code a tampered file carries) unless the YAML says `trust_policy: true`. Example YAML:

    name: ppo-deployed
    kind: sb3-policy
    params: {algo: ppo, path: runs/ppo-sim.zip}
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.noise import NormalActionNoise

from mosgym.agents.policy_file import ACTIVATIONS, load_policy, mosgym_spaces
from mosgym.agents.replay_buffer import buffer_path, load_replay_buffer, save_replay_buffer
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "dqn": DQN}
ALGO_ACTION_KINDS = {
    "ppo": "any",
    "a2c": "any",
    "sac": "continuous",
    "td3": "continuous",
    "dqn": "discrete",
}
"""Action spaces each algorithm supports ('any': Box and Discrete)."""
_SET_BY_US = {
    "self",
    "policy",
    "env",
    "seed",
    "device",
    "verbose",
    "_init_setup_model",
    "tensorboard_log",
    "action_noise",
}
LogMetrics = Callable[[dict[str, float], int], None]


@runtime_checkable
class SelfDrivingAgent(Protocol):
    """An agent that steps the env itself (SB3 learning online). The runner checks
    `isinstance(agent, SelfDrivingAgent)` and calls `learn` instead of act/observe."""

    name: str
    action_kind: str

    def setup(self, spec: EnvSpec, seed: int) -> None:
        """Called once before learning."""

    def learn(
        self,
        env: gym.Env,
        total_env_steps: int,
        callback: Any = None,
        log_metrics: LogMetrics | None = None,
    ) -> None:
        """Interact with `env` for `total_env_steps` steps, learning as it goes."""


@dataclass
class SB3Params:
    """An SB3 algorithm learning online inside the run."""

    algo: str = "ppo"
    """'ppo', 'a2c' (continuous or discrete actions), 'sac', 'td3' (continuous), 'dqn'
    (discrete)."""
    policy: str = "MlpPolicy"
    """SB3 policy name."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the algorithm's constructor (n_steps, learning_rate, batch_size,
    policy_kwargs: {net_arch: [64, 64], activation_fn: tanh}, ...), as plain data."""
    log_interval: int = 1
    """Dump SB3's logs every this many rollouts (PPO/A2C) or episodes (SAC/TD3/DQN)."""
    action_noise_sigma: float = 0.0
    """SAC/TD3: std of Gaussian exploration noise on actions (0: none)."""
    device: str = "cpu"
    """Torch device for the policy (tiny MLPs: the CPU is fastest)."""
    resume_from: str | None = None
    """Go on learning from this model (the `save_to` file of an earlier run): weights, optimizer
    states and step count, read without unpickling, and an off-policy algorithm's replay buffer
    from the `.buffer.npz` beside it. Chains runs into one training across episodes, each a
    fresh fine-tuning run (`mosgym benchmark --stage real-train`)."""
    save_to: str | None = None
    """After learning, save the model here (.zip, SB3's format) and an off-policy algorithm's
    replay buffer beside it (`<file>.buffer.npz`), both written whole or not at all."""


@dataclass
class SB3PolicyParams:
    """A saved SB3 policy (.zip from model.save) that acts without learning."""

    path: str
    """The .zip file (relative paths resolve against the agent YAML's folder)."""
    algo: str = "ppo"
    """The algorithm that saved it: ppo, a2c, sac, td3 or dqn."""
    deterministic: bool = True
    """Act with the policy's mode rather than sampling."""
    device: str = "cpu"
    """Torch device for the policy."""
    trust_policy: bool = False
    """Load the file with SB3's own `load`, which unpickles its `data` entries: code hidden in
    a tampered file then runs with your permissions (a warning is logged). Off (default): the
    file is read as JSON and weights only, which covers every MlpPolicy with plain network
    settings (all that mosgym trains). Turn on only for a file you made or whose author you
    trust, e.g. one with a custom features extractor."""


class MetricsWriter(KVWriter):
    """Forwards SB3's numeric logs to `log_metrics(dict, step)` (the runner passes MLflow).

    Keys are prefixed (e.g. 'sb3/train/value_loss'); SB3's step (env steps) is multiplied by
    `step_scale` (the env's interval S) so it lines up with the optimizer-step axis.
    """

    def __init__(self, log_metrics: LogMetrics, prefix: str = "sb3/", step_scale: int = 1) -> None:
        self.log_metrics = log_metrics
        self.prefix = prefix
        self.step_scale = step_scale

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        metrics = {
            self.prefix + k: float(v)
            for k, v in key_values.items()
            if isinstance(v, int | float | np.number)
            and not isinstance(v, bool)
            and math.isfinite(float(v))
        }
        if metrics:
            self.log_metrics(metrics, int(step) * self.step_scale)

    def close(self) -> None:
        """Nothing to close: the caller owns the MLflow run."""


def check_algo(algo: str, name: str) -> type[BaseAlgorithm]:
    if algo not in ALGOS:
        raise MosgymError(f"agent {name}: params.algo {algo!r} unknown (valid: {', '.join(ALGOS)})")
    return ALGOS[algo]


def build_kwargs(params: SB3Params, name: str) -> dict[str, Any]:
    """Constructor kwargs from YAML plain data; unknown keys are MosgymErrors naming them."""
    cls = check_algo(params.algo, name)
    valid = set(inspect.signature(cls.__init__).parameters) - _SET_BY_US
    kwargs = dict(params.hyperparams)
    for key in kwargs:
        if key not in valid:
            raise MosgymError(
                f"agent {name}: params.hyperparams.{key} is not a {cls.__name__} argument "
                f"(valid: {', '.join(sorted(valid))})"
            )
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    act = policy_kwargs.get("activation_fn")
    if isinstance(act, str):
        if act not in ACTIVATIONS:
            raise MosgymError(
                f"agent {name}: policy_kwargs.activation_fn {act!r} unknown "
                f"(valid: {', '.join(ACTIVATIONS)})"
            )
        policy_kwargs["activation_fn"] = ACTIVATIONS[act]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if isinstance(kwargs.get("train_freq"), list):  # YAML has no tuples: [1, step]
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    return kwargs


def check_spaces(spec: EnvSpec, obs_space: gym.Space, act_space: gym.Space, where: str) -> None:
    """A policy's spaces must match the env's: (4N+1,) observations, N actions."""
    n = len(spec.skill_names)
    obs_ok = isinstance(obs_space, gym.spaces.Box) and obs_space.shape == (4 * n + 1,)
    if isinstance(act_space, gym.spaces.Discrete):
        act_ok = spec.action_kind == "discrete" and int(act_space.n) == n
    else:
        act_ok = spec.action_kind == "continuous" and getattr(act_space, "shape", None) == (n,)
    if not (obs_ok and act_ok):
        raise MosgymError(
            f"{where}: the policy was trained for observations {obs_space} and actions "
            f"{act_space}, but this env has {n} skills ({spec.action_kind} actions); use a "
            "policy trained on an env with the same skills and action kind"
        )


class SB3Agent:
    """An SB3 algorithm learning online; after `learn` it can also act (deterministically)."""

    def __init__(self, name: str, params: SB3Params) -> None:
        self.name = name
        self.params = params
        self.cls = check_algo(params.algo, name)
        self.kwargs = build_kwargs(params, name)
        self.action_kind = ALGO_ACTION_KINDS[params.algo]
        self.model: BaseAlgorithm | None = None
        self.spec: EnvSpec | None = None
        self.seed = 0
        self.interval = 1
        self.metrics_sink: LogMetrics | None = None

    def set_metrics_sink(self, log_metrics: LogMetrics | None) -> None:
        """Where SB3's own logs go by default: `log_metrics(dict, step)` (e.g. MLflow)."""
        self.metrics_sink = log_metrics

    def setup(self, spec: EnvSpec, seed: int) -> None:
        if self.action_kind not in ("any", spec.action_kind):
            raise MosgymError(
                f"agent {self.name}: {self.params.algo} needs {self.action_kind} actions, the env "
                f"has {spec.action_kind} ones (set action.kind={self.action_kind})"
            )
        self.spec, self.seed, self.interval = spec, seed, spec.interval

    def _with_noise(self, n: int) -> dict[str, Any]:
        """Constructor kwargs, with SAC/TD3 exploration noise on `n` actions if asked for."""
        kwargs = dict(self.kwargs)
        if self.params.action_noise_sigma > 0 and self.params.algo in ("sac", "td3"):
            sigma = self.params.action_noise_sigma
            kwargs["action_noise"] = NormalActionNoise(np.zeros(n), np.full(n, sigma))
        return kwargs

    def _build(self, env: gym.Env) -> BaseAlgorithm:
        kwargs = self._with_noise(int(np.prod(env.action_space.shape or (1,))))
        try:
            return self.cls(
                self.params.policy,
                env,
                seed=self.seed,
                device=self.params.device,
                verbose=0,
                **kwargs,
            )
        except (ValueError, TypeError, AssertionError) as e:
            raise MosgymError(
                f"agent {self.name}: {self.cls.__name__} rejected its settings: {e}"
            ) from None

    def learn(
        self,
        env: gym.Env,
        total_env_steps: int,
        callback: Any = None,
        log_metrics: LogMetrics | None = None,
    ) -> None:
        """SB3 steps `env` for `total_env_steps` more steps (continuing after `load`).

        `callback` goes to `model.learn` as is; SB3's logs go to `log_metrics` (default: the
        sink from `set_metrics_sink`), keys prefixed 'sb3/', step = env steps * S.
        """
        log_metrics = log_metrics or self.metrics_sink
        if self.model is None and self.params.resume_from:
            self._resume(env, self.params.resume_from)
        elif self.model is None:
            self.model = self._build(env)
        else:
            self.model.set_env(env)
        writers = (
            [] if log_metrics is None else [MetricsWriter(log_metrics, step_scale=self.interval)]
        )
        self.model.set_logger(Logger(folder=None, output_formats=writers))
        self.model.learn(
            total_env_steps,
            callback=callback,
            log_interval=self.params.log_interval,
            reset_num_timesteps=False,
        )
        if self.params.save_to:
            self.save_with_buffer(self.params.save_to)

    def _resume(self, env: gym.Env, path: str) -> None:
        """The saved model, on `env`, seeded with this run's seed: SB3 resets the env with it
        at the start of `learn`, as it does for a new model."""
        self.load(path, (env.observation_space, env.action_space))
        assert self.model is not None
        self.model.set_env(env)
        self.model.set_random_seed(self.seed)
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            load_replay_buffer(buffer, buffer_path(path))

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        """Nothing per episode: SB3 keeps its own rollout state."""

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        if self.model is None:
            raise MosgymError(f"agent {self.name}: call learn() or load() before act()")
        return predict(self.model, obs, deterministic=True)

    def observe(self, *args: Any, **kwargs: Any) -> None:
        """Learning happens inside `learn` (SB3 sees every transition there)."""

    def state_dict(self) -> dict[str, Any]:
        """Counters only: the learning state is the model itself (see `save`)."""
        steps = 0 if self.model is None else int(self.model.num_timesteps)
        return {"algo": self.params.algo, "num_timesteps": steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore here: use `load(path)` for the model."""

    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise MosgymError(f"agent {self.name}: nothing to save before learn()")
        self.model.save(path)

    def save_with_buffer(self, path: str | Path) -> None:
        """`save`, plus an off-policy algorithm's replay buffer (`buffer_path`); each file is
        written under a temporary name and renamed, so a stopped run leaves no half file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.zip")
        self.save(tmp)
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            save_replay_buffer(buffer, buffer_path(path))
        os.replace(tmp, path)

    def load(self, path: str | Path, spaces: tuple[gym.Space, gym.Space] | None = None) -> None:
        """Go on from a saved model (weights, optimizer states, step count; read without
        unpickling): call after setup(); the YAML's settings must match the file's. spaces:
        the env's (observation, action) spaces (default: mosgym's for the spec's skills)."""
        if self.spec is None:
            raise MosgymError(f"agent {self.name}: call setup() before load()")
        n = len(self.spec.skill_names)
        spaces = spaces or mosgym_spaces(n, self.spec.action_kind)
        kwargs = self._with_noise(n)
        self.model = load_policy(
            path, self.cls, spaces=spaces, device=self.params.device, train_kwargs=kwargs
        )


class SB3PolicyAgent:
    """A saved SB3 policy acting without learning (deployment of a trained scheduler)."""

    def __init__(self, name: str, params: SB3PolicyParams) -> None:
        self.name = name
        self.params = params
        self.model = load_policy(
            params.path,
            check_algo(params.algo, name),
            device=params.device,
            trust=params.trust_policy,
        )
        discrete = isinstance(self.model.action_space, gym.spaces.Discrete)
        self.action_kind = "discrete" if discrete else "continuous"

    def setup(self, spec: EnvSpec, seed: int) -> None:
        check_spaces(spec, self.model.observation_space, self.model.action_space, self.params.path)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        """A frozen policy keeps no episode state (MLP policies)."""

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        return predict(self.model, obs, deterministic=self.params.deterministic)

    def observe(self, *args: Any, **kwargs: Any) -> None:
        """Frozen: nothing to learn."""

    def state_dict(self) -> dict[str, Any]:
        return {"path": self.params.path}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the policy is the file."""


def predict(model: BaseAlgorithm, obs: np.ndarray, deterministic: bool) -> np.ndarray | int:
    action, _ = model.predict(np.asarray(obs, dtype=np.float32), deterministic=deterministic)
    if isinstance(model.action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(()))
    return np.asarray(action, dtype=np.float32)


def load_model(cls: type[BaseAlgorithm], path: str | Path, device: str) -> BaseAlgorithm:
    """A saved frozen `cls` policy, read safely (`policy_file.load_policy`; kept for callers)."""
    return load_policy(path, cls, device=device)
