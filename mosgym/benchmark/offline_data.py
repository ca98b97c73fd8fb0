"""Offline RL data: the real runs already in MLflow, turned back into transitions.

Every `mosgym run` run logs, per decision, the dev loss and examples seen of each skill and the
mixture it chose (mosgym.experiment.tracking). That is enough to rebuild, number for number,
the observations an env would have shown, whatever agent made the run:

    obs_k = [dev_k / dev_0, mixture_{k-1} (uniform at k = 0), examples_k / train sizes,
             R_k (zeros at k = 0), k S / T]        (float32, MixtureOfSkillsEnv._obs)

where R_k is the env reward of `OFFLINE_REWARD` (mean_progress, what the SB3 entries learn
from), recomputed from the logged dev losses by mosgym.rewards itself: a MoS run (COSSIM) or a
static one (no reward) becomes a transition sequence of the same observation space as any
other. The action is the mixture as a continuous action (`as_action`); the reward is
the objective itself, the fall of the mean dev loss over the interval, so an episode's return
is initial minus final mean dev loss. tests/test_offline.py replays a logged run on the real env
and checks that its observations are exactly these.

Which runs: FINISHED single runs of the suite's real env, every setting that shapes the task
equal (learner, model, data, skills, batch, lr, decisions; reward and probe settings may
differ: the reward is recomputed), whose mixtures an action reproduces (a discrete agent's
one-hot mixture does not: dropped and counted). Runs of this route's own deployments are left
out (their names end in -offline), so rebuilding the data never feeds them back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosgym.benchmark import tracking as bt
from mosgym.config import EnvConfig, RewardConfig, to_dict
from mosgym.envs.mixing import action_to_mixture
from mosgym.errors import MosgymError
from mosgym.experiment.run_params import env_params
from mosgym.experiment.sim2real import cfg_skill_names
from mosgym.records.runs import metric_history, search_all
from mosgym.rewards import RewardComputer

log = logging.getLogger(__name__)

OFFLINE_REWARD = RewardConfig(type="mean_progress")
"""The reward in the observations (that of the benchmark's SB3 entries)."""
_FREE = ("env.name", "env.reward.", "env.train.probe_")
"""Params that may differ between usable runs: names, and what only the reward reads."""
_MATCH_TOL = 1e-6
"""Largest weight difference between a logged mixture and the action's mixture."""


@dataclass
class Transitions:
    """Decisions of many runs, in run order. M transitions, D = 4N + 1, N skills."""

    observations: np.ndarray
    """(M, D) float32."""
    actions: np.ndarray
    """(M, N) float32 in [-1, 1]."""
    rewards: np.ndarray
    """(M,) float64: the fall of the mean dev loss over the decision's interval."""
    terminals: np.ndarray
    """(M,) float64: 1 on each run's last decision."""
    seeds: np.ndarray
    """(M,) int64: the real seed of the run each transition comes from."""
    run_ids: list[str]
    """The runs, in order (each contributes T / S transitions)."""

    def without_seeds(self, seeds: list[int]) -> Transitions:
        """The transitions of runs on none of `seeds` (a policy never learns from an episode
        of the real seed it is scored on)."""
        keep = ~np.isin(self.seeds, seeds)
        per_run = len(self.seeds) // max(len(self.run_ids), 1)
        runs = [r for k, r in enumerate(self.run_ids) if keep[k * per_run]]
        return Transitions(
            self.observations[keep],
            self.actions[keep],
            self.rewards[keep],
            self.terminals[keep],
            self.seeds[keep],
            runs,
        )

    def digest(self) -> str:
        """A short hash of the numbers (a policy's record says which data it learnt from)."""
        h = hashlib.sha256()
        for a in (self.observations, self.actions, self.rewards, self.terminals, self.seeds):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: Any) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        np.savez_compressed(path, **{**arrays, "run_ids": np.array(self.run_ids)})

    @classmethod
    def load(cls, path: Any) -> Transitions:
        with np.load(path, allow_pickle=False) as z:
            values = {f.name: z[f.name] for f in dataclasses.fields(cls)}
        return cls(**{**values, "run_ids": [str(r) for r in values["run_ids"]]})


def task_params(cfg: EnvConfig) -> dict[str, str]:
    """The params of a run on `cfg` that must match (as logged: strings)."""
    return {k: str(v) for k, v in env_params(to_dict(cfg)).items() if not k.startswith(_FREE)}


def usable(run: Any, wanted: dict[str, str]) -> bool:
    """A FINISHED single run of the same task, not one of this route's deployments."""
    tags, params = run.data.tags, run.data.params
    if run.info.status != "FINISHED" or tags.get(bt.KIND) != "run" or bt.SEED not in tags:
        return False
    if tags.get(bt.ALGO, "").endswith(bt.OFFLINE):  # this route's own deployments
        return False
    got = {k: v for k, v in params.items() if k.startswith("env.") and not k.startswith(_FREE)}
    return got == wanted


def _table(client: Any, run_id: str, prefix: str, skills: list[str], steps: list[int]):
    """(len(steps), N) values of prefix/{skill} at `steps`, or None if one is missing."""
    cols = []
    for s in skills:
        at, values = metric_history(client, run_id, f"{prefix}/{s}")
        series = dict(zip(at.astype(int).tolist(), values.tolist(), strict=True))
        if any(t not in series for t in steps):
            return None
        cols.append([series[t] for t in steps])
    return np.array(cols, dtype=np.float64).T


def as_action(p: np.ndarray, logit_scale: float) -> np.ndarray:
    """(N,) float32 action in [-1, 1] whose mixture (before the floor) is `p`, exact whenever
    any action gives p: log p centred on its mid-range (max + min) / 2, which fits in
    [-logit_scale, logit_scale] exactly then. (`mixture_to_action` centres on the mean,
    which misses e.g. an SB3 action with most entries at -1.)"""
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    finite = log_p[np.isfinite(log_p)]
    mid = (finite.max() + finite.min()) / 2.0 if finite.size else 0.0
    return np.clip((log_p - mid) / logit_scale, -1.0, 1.0).astype(np.float32)


def run_transitions(
    client: Any, run: Any, cfg: EnvConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(observations (K, D), actions (K, N), rewards (K,)) of one run of the task `cfg`, or why
    it cannot be used (a missing curve, a mixture no action gives)."""
    skills = cfg_skill_names(cfg)
    n, total, interval = len(skills), cfg.train.total_steps, cfg.train.interval
    k_max = total // interval
    points = [k * interval for k in range(k_max + 1)]
    dev = _table(client, run.info.run_id, "dev_loss", skills, points)
    examples = _table(client, run.info.run_id, "examples", skills, points)
    weights = _table(client, run.info.run_id, "weight", skills, points[:-1])
    if dev is None or examples is None or weights is None:
        return "a per-decision curve is missing"
    sizes = np.asarray(json.loads(run.data.tags.get("mosgym.train_sizes", "[]")), np.int64)
    if sizes.shape != (n,):  # the runner's JSON list of per-skill training sizes
        return "no mosgym.train_sizes tag"
    scale, floor = cfg.action.logit_scale, cfg.action.floor
    actions = []
    for p in weights:
        a = as_action((p - floor) / (1.0 - n * floor), scale)
        if np.max(np.abs(action_to_mixture(a, "continuous", n, scale, floor) - p)) > _MATCH_TOL:
            return "a mixture that no continuous action gives (e.g. a discrete agent's)"
        actions.append(a)
    rewards = RewardComputer(OFFLINE_REWARD, skills, cfg.train.probe_size)
    init = dev[0]
    mixture, last_reward = np.full(n, 1.0 / n), np.zeros(n)
    obs = []
    for k in range(k_max):
        epochs = examples[k] / np.maximum(sizes, 1)
        parts = [dev[k] / init, mixture, epochs, last_reward, [points[k] / total]]
        obs.append(np.concatenate(parts).astype(np.float32))
        mixture = weights[k]
        last_reward = rewards.compute(None, None, dev[k + 1], dev[k], init).smoothed  # type: ignore[arg-type]
    objective = np.array([float(np.mean(dev[k] - dev[k + 1])) for k in range(k_max)])
    return np.stack(obs), np.stack(actions), objective


def collect(client: Any, cfg: EnvConfig) -> Transitions:
    """The transitions of every usable run of the task `cfg` in the MLflow store (all its
    experiments), runs in start order; how many were dropped, and why, is logged. None is
    one error line."""
    wanted = task_params(cfg)
    obs, acts, rews, terms, seeds, ids = [], [], [], [], [], []
    dropped: dict[str, int] = {}
    for exp in client.search_experiments():
        for run in search_all(client, exp.experiment_id, ""):
            if not usable(run, wanted):
                continue
            got = run_transitions(client, run, cfg)
            if isinstance(got, str):
                dropped[got] = dropped.get(got, 0) + 1
                continue
            o, a, r = got
            term = np.zeros(len(r))
            term[-1] = 1.0
            obs.append(o), acts.append(a), rews.append(r), terms.append(term)
            seeds.append(np.full(len(r), int(run.data.tags[bt.SEED]), dtype=np.int64))
            ids.append(run.info.run_id)
    for why, count in dropped.items():
        log.info("offline data: %d runs left out: %s", count, why)
    if not ids:
        raise MosgymError(
            f"--stage offline: no usable finished run of env {cfg.name!r} in the MLflow store "
            "(offline RL learns from logged real runs: run the real stage or `mosgym run` first)"
        )
    return Transitions(
        np.concatenate(obs),
        np.concatenate(acts),
        np.concatenate(rews),
        np.concatenate(terms),
        np.concatenate(seeds),
        ids,
    )
