"""MoS rewards (MOS.md, "Rewards"), the paper's learned baselines, and other mixing signals.

The math lives in small pure functions over arrays (shapes in each docstring) so each can be
checked against hand-computed numbers. `RewardComputer` turns a `RewardConfig` into one reward
vector R (N,) per scorer update: it asks the learner for what that reward type needs (batched
probes, gradient alignment or uncertainty), applies MoSpec and EMA, and guarantees that no NaN
ever reaches an agent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

from mosgym import timing
from mosgym.config import RewardConfig
from mosgym.errors import MosgymError
from mosgym.learner.base import Learner, ProbeResult, TrainStats

logger = logging.getLogger(__name__)

REWARD_TYPES = (
    "cossim",
    "diff",
    "multidds",
    "multiuat",
    "train_loss",
    "learning_progress",
    "mean_progress",
    "excess_loss",
    "none",
)
"""Every reward type `RewardConfig.type` accepts ('none': zeros, for agents that do not learn
from rewards, so static baselines pay for no probes)."""
PROBE_TYPES = ("cossim", "diff")
"""Reward types computed from `Learner.probe` results."""
TARGET_TYPES = ("cossim", "diff", "multidds")
"""Types that accept `RewardConfig.target`: the MoSpec forms, and MultiDDS (target = dev set)."""
DIFF_SCOPES = ("response", "sequence")


# --------------------------------------------------------------------------------------------
# Pure functions


def temperature_prior(sizes: np.ndarray, tau: float) -> np.ndarray:
    """(N,) sampling distribution p_i(tau) = q_i^(1/tau) / sum_n q_n^(1/tau), q = sizes / total.

    `sizes` (N,) dataset sizes. tau = 1 is PROP, tau = 10 is TEMP, tau = inf is UNI. Computed
    as a softmax of log(q) / tau, so tiny datasets and large tau do not underflow.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or sizes.size == 0 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise MosgymError(
            f"temperature prior: dataset sizes must be positive, got {sizes.tolist()} "
            "(every skill needs at least one training example)"
        )
    if not tau > 0:
        raise MosgymError(f"temperature prior: tau must be > 0 (1 = PROP, inf = UNI), got {tau}")
    if np.isinf(tau):
        return np.full(sizes.size, 1.0 / sizes.size)
    logits = np.log(sizes / sizes.sum()) / tau
    return np.exp(logits - logsumexp(logits))


def dataset_embeddings(embeddings: list[np.ndarray]) -> np.ndarray:
    """(N, H) dataset embeddings z_i: the mean of each skill's (L_i, H) example embeddings.

    Examples with a non-finite value are skipped (as in the authors' code); a skill with no
    finite example gets a NaN row.
    """
    rows = []
    for e in embeddings:
        e = np.asarray(e, dtype=np.float64)
        keep = e[np.all(np.isfinite(e), axis=1)]
        rows.append(keep.mean(axis=0) if len(keep) else np.full(e.shape[1], np.nan))
    return np.stack(rows)


def _cosine_matrix(z: np.ndarray) -> np.ndarray:
    """(N, N) pairwise cosine similarities of the rows of z (N, H); NaN for zero or NaN rows."""
    z = np.asarray(z, dtype=np.float64)
    norms = np.linalg.norm(z, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = z / np.where(norms > 0, norms, np.nan)[:, None]
    return unit @ unit.T


def cossim_rewards(z: np.ndarray) -> np.ndarray:
    """(N,) COSSIM: R(i) = (1/N) sum_n cos(z_i, z_n), the skill itself included.

    `z` (N, H) dataset embeddings. A skill without an embedding (NaN row) gets NaN and is left
    out of the others' averages, so one failed probe does not spoil every reward.
    """
    cos = _cosine_matrix(z)
    ok = np.isfinite(np.diag(cos))
    out = np.full(cos.shape[0], np.nan)
    if ok.any():
        out[ok] = cos[np.ix_(ok, ok)].mean(axis=1)
    return out


def cossim_target_rewards(z: np.ndarray, target: int) -> np.ndarray:
    """(N,) MoSpec COSSIM: R(i) = cos(z_i, z_target); the target itself gets 1.

    `z` (N, H) dataset embeddings, `target` the target skill's index.
    """
    return _cosine_matrix(z)[:, target].copy()


def cossim_rewards_finite(z: np.ndarray, target: int | None = None) -> np.ndarray:
    """(N,) `cossim_rewards` (`cossim_target_rewards` with a target) of (N, H) finite, non-zero
    embeddings, to rounding, from G = z z^T in a few numpy calls: R(i) = mean_n G_in/|z_i||z_n|.
    """
    gram = z @ z.T
    inv = 1.0 / np.sqrt(gram.diagonal())
    if target is not None:
        return gram[:, target] * inv * inv[target]
    return (gram @ inv) * inv / len(inv)


def diff_rewards(nll: list[np.ndarray], init_nll: list[np.ndarray]) -> np.ndarray:
    """(N,) DIFF: R(i) = (1/L_i) sum_j PPL_theta(j) / PPL_theta0(j) = mean_j exp(nll_j - init_j).

    `nll[i]`, `init_nll[i]` (L_i,) per-example mean NLL under the current and the initial model.
    The mean of exponentials is taken as exp(logsumexp(d) - log L) so large differences do not
    overflow early. Pairs with a non-finite value are skipped; a skill with none left is NaN.
    """
    out = np.full(len(nll), np.nan)
    for i, (a, b) in enumerate(zip(nll, init_nll, strict=True)):
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        d = d[np.isfinite(d)]
        if d.size:
            with np.errstate(over="ignore"):
                out[i] = np.exp(logsumexp(d) - np.log(d.size))
    return out


def diff_rewards_rows(nll: np.ndarray, init_nll: np.ndarray) -> np.ndarray:
    """(N,) DIFF from (N, W) rows: `diff_rewards` of each row's finite pairs (NaN pads rows),
    as exp(max d) * mean(exp(d - max d)) against early overflow; NaN for a row without one."""
    d = np.asarray(nll, dtype=np.float64) - np.asarray(init_nll, dtype=np.float64)
    ok = np.isfinite(d)
    d = np.where(ok, d, -np.inf)
    top = d.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return np.exp(top[:, 0]) * np.exp(d - top).sum(axis=1) / ok.sum(axis=1)


def mospec_diff(r: np.ndarray, target: int) -> np.ndarray:
    """(N,) MoSpec DIFF: a copy of the DIFF rewards `r` (N,) with the target's doubled."""
    out = np.array(r, dtype=np.float64)
    out[target] *= 2.0
    return out


def ema_update(prev: np.ndarray | None, new: np.ndarray, beta: float) -> np.ndarray:
    """(N,) Rbar_t = beta * R_t + (1 - beta) * Rbar_{t-1}; `prev` None means Rbar_0 = 1.

    The new reward gets weight beta (the authors' code; the paper: beta = 0.9).
    """
    new = np.asarray(new, dtype=np.float64)
    prev_arr = np.ones_like(new) if prev is None else np.asarray(prev, dtype=np.float64)
    return beta * new + (1.0 - beta) * prev_arr


def learning_progress(prev_dev: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """(N,) dev-loss decrease since the last update, prev_dev - dev (positive: still learning)."""
    return np.asarray(prev_dev, dtype=np.float64) - np.asarray(dev, dtype=np.float64)


def mean_progress(prev_dev: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """(N,) the decrease of the MEAN dev loss since the last update, the same for every skill.

    The env's reward p . R is then that decrease whatever the mixture, so an episode's return
    telescopes to (initial - final) mean dev loss: the objective itself. Mixture-weighted
    learning progress can be gamed (weight a skill only while it recovers from a rise another
    skill's training caused); this cannot.
    """
    d = float(np.mean(np.asarray(prev_dev, np.float64) - np.asarray(dev, np.float64)))
    return np.full(len(np.asarray(dev)), d)


def excess_loss(dev: np.ndarray, init_dev: np.ndarray) -> np.ndarray:
    """(N,) dev loss in excess of the initial model's, dev - init_dev (higher: learnt less)."""
    return np.asarray(dev, dtype=np.float64) - np.asarray(init_dev, dtype=np.float64)


def fill_non_finite(r: np.ndarray, prev: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Replace non-finite rewards so no NaN reaches an agent; returns (filled (N,), mask (N,)).

    Each non-finite R(i) takes its previous smoothed value prev[i] when finite, else the mean
    of this update's finite rewards, else 1.0 (the EMA's starting value).
    """
    r = np.array(r, dtype=np.float64)
    bad = ~np.isfinite(r)
    if not bad.any():
        return r, bad
    fallback = float(r[~bad].mean()) if (~bad).any() else 1.0
    for i in np.flatnonzero(bad):
        p = None if prev is None else prev[i]
        r[i] = p if p is not None and np.isfinite(p) else fallback
    return r, bad


# --------------------------------------------------------------------------------------------
# The reward computer used by the environment


@dataclass
class RewardResult:
    """One update's rewards. Shapes: N = number of skills."""

    raw: np.ndarray
    """(N,) rewards before EMA (MoSpec and non-finite fallback applied)."""
    smoothed: np.ndarray
    """(N,) rewards after EMA (equal to `raw` when EMA is off): what the agent receives."""
    probe_skipped: int
    """Probe examples dropped for non-finite values (the learner's and ours)."""
    fallback: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """(N,) bool: skills whose reward could not be computed and was filled in."""

    @property
    def n_fallback(self) -> int:
        """How many skills' rewards were filled in this update."""
        return int(np.sum(self.fallback))


def _choice_error(field_name: str, value: Any, valid: tuple[str, ...] | list[str]) -> MosgymError:
    return MosgymError(
        f"reward.{field_name}: unknown value {value!r} (valid values: {', '.join(valid)})"
    )


def _validate(cfg: RewardConfig, skill_names: list[str], probe_size: int) -> int | None:
    """Check `cfg` against the skills; return the target's index (None without a target)."""
    if cfg.type not in REWARD_TYPES:
        raise _choice_error("type", cfg.type, REWARD_TYPES)
    if cfg.diff_scope not in DIFF_SCOPES:
        raise _choice_error("diff_scope", cfg.diff_scope, DIFF_SCOPES)
    if not (0.0 < cfg.ema_beta <= 1.0):
        raise MosgymError(
            f"reward.ema_beta: must be in (0, 1] (the weight of the new reward; the paper: 0.9), "
            f"got {cfg.ema_beta}"
        )
    if cfg.type == "multiuat" and cfg.uat_samples < 1:
        raise MosgymError(
            f"reward.uat_samples: must be >= 1 (1 = predictive entropy), got {cfg.uat_samples}"
        )
    if probe_size < 1:
        raise MosgymError(f"train.probe_size: must be >= 1, got {probe_size}")
    if cfg.target is None:
        return None
    if cfg.type not in TARGET_TYPES:
        raise MosgymError(
            f"reward.target: reward type '{cfg.type}' has no target form (a target works with "
            f"types: {', '.join(TARGET_TYPES)}); remove reward.target or change reward.type"
        )
    if cfg.target not in skill_names:
        raise _choice_error("target", cfg.target, skill_names)
    return skill_names.index(cfg.target)


class RewardComputer:
    """Computes the configured reward vector R (N,) once per scorer update, with EMA state.

    The EMA state belongs to one fine-tuning run (one episode): call `reset` at episode start
    and checkpoint it with `state_dict`, so a resumed run continues its trajectory.
    """

    def __init__(self, cfg: RewardConfig, skill_names: list[str], probe_size: int) -> None:
        self.cfg = cfg
        self.skill_names = list(skill_names)
        self.probe_size = probe_size
        self.target = _validate(cfg, self.skill_names, probe_size)
        self._prev: np.ndarray | None = None

    @property
    def needs_probes(self) -> bool:
        """Whether `compute` calls `Learner.probe` (the costly part of MoS)."""
        return self.cfg.type in PROBE_TYPES

    def reset(self) -> None:
        """Start a new run: the EMA restarts from Rbar_0 = 1."""
        self._prev = None

    @timing.timed(timing.REWARD)
    def compute(
        self,
        learner: Learner,
        train_stats: TrainStats | None = None,
        dev_loss: np.ndarray | None = None,
        prev_dev_loss: np.ndarray | None = None,
        init_dev_loss: np.ndarray | None = None,
    ) -> RewardResult:
        """Rewards after a training interval.

        `train_stats` is the interval's `TrainStats`; `dev_loss`, `prev_dev_loss` (None at the
        first update: the initial loss is used) and `init_dev_loss` are (N,) dev losses now,
        at the previous update and before training. Only the inputs the reward type uses are
        needed.
        """
        raw, skipped = self._base_rewards(
            learner, train_stats, dev_loss, prev_dev_loss, init_dev_loss
        )
        if self.target is not None and self.cfg.type == "diff":
            raw = mospec_diff(raw, self.target)
        # In Python floats: the doubles of fill_non_finite and ema_update, cheaper for N values.
        raw = np.array(raw, dtype=np.float64)
        values = raw.tolist()
        if all(map(math.isfinite, values)):
            bad = np.zeros(raw.shape, dtype=bool)
        else:
            raw, bad = fill_non_finite(raw, self._prev)
            values = raw.tolist()
            names = [self.skill_names[i] for i in np.flatnonzero(bad)]
            logger.warning("reward %s not computable for %s; filled in", self.cfg.type, names)
        if self.cfg.ema:  # ema_update: beta * R + (1 - beta) * previous, which starts at 1
            b = self.cfg.ema_beta
            old = [1.0] * len(values) if self._prev is None else self._prev.tolist()
            smoothed = np.array([b * r + (1.0 - b) * q for r, q in zip(values, old, strict=True)])
        else:
            smoothed = raw.copy()
        self._prev = smoothed.copy()
        return RewardResult(raw=raw, smoothed=smoothed, probe_skipped=skipped, fallback=bad)

    def _base_rewards(
        self,
        learner: Learner,
        train_stats: TrainStats | None,
        dev_loss: np.ndarray | None,
        prev_dev_loss: np.ndarray | None,
        init_dev_loss: np.ndarray | None,
    ) -> tuple[np.ndarray, int]:
        """(N,) rewards of the configured type before MoSpec/fallback/EMA, and probes skipped."""
        kind = self.cfg.type
        if kind == "none":
            return np.zeros(len(self.skill_names)), 0
        if kind in PROBE_TYPES:
            return self._probe_rewards(learner)
        if kind == "multidds":
            return np.asarray(learner.gradient_alignment(self.probe_size, self.target), float), 0
        if kind == "multiuat":
            u = learner.uncertainty(self.probe_size, self.cfg.uat_samples)
            return np.asarray(u, dtype=np.float64), 0
        if kind == "train_loss":
            if train_stats is None:
                raise ValueError("reward 'train_loss' needs train_stats")
            return np.asarray(train_stats.mean_loss, dtype=np.float64), 0
        if dev_loss is None or init_dev_loss is None:
            raise ValueError(f"reward '{kind}' needs dev_loss and init_dev_loss")
        if kind in ("learning_progress", "mean_progress"):
            prev = init_dev_loss if prev_dev_loss is None else prev_dev_loss
            fn = learning_progress if kind == "learning_progress" else mean_progress
            return fn(prev, dev_loss), 0
        return excess_loss(dev_loss, init_dev_loss), 0

    def _probe_rewards(self, learner: Learner) -> tuple[np.ndarray, int]:
        """COSSIM or DIFF from one batched probe per skill; counts every dropped example."""
        if callable(getattr(learner, "probe_nll_rows", None)):
            return self._batched_probe_rewards(learner), 0
        # COSSIM needs no initial-model NLL: skip that second forward on a real model.
        with_initial = self.cfg.type == "diff"
        probes: list[ProbeResult] = [
            learner.probe(i, self.probe_size, with_initial=with_initial)
            for i in range(len(self.skill_names))
        ]
        skipped = sum(int(p.n_skipped) for p in probes)
        if self.cfg.type == "cossim":
            embs = [np.asarray(p.embeddings, dtype=np.float64) for p in probes]
            skipped += sum(int(np.sum(~np.all(np.isfinite(e), axis=1))) for e in embs)
            z = dataset_embeddings(embs)
            if self.target is not None:
                return cossim_target_rewards(z, self.target), skipped
            return cossim_rewards(z), skipped
        if self.cfg.diff_scope == "response":
            pairs = [(p.nll, p.init_nll) for p in probes]
        else:
            pairs = [(p.seq_nll, p.init_seq_nll) for p in probes]
        cur = [np.asarray(a, dtype=np.float64) for a, _ in pairs]
        init = [np.asarray(b, dtype=np.float64) for _, b in pairs]
        skipped += sum(int(np.sum(~np.isfinite(a - b))) for a, b in zip(cur, init, strict=True))
        return diff_rewards(cur, init), skipped

    def _batched_probe_rewards(self, learner: Any) -> np.ndarray:
        """COSSIM or DIFF from a learner that summarises one probe of every skill at once (the
        simulator; it drops no example): ``probe_embedding_means(n)``, (N, H) dataset
        embeddings, and ``probe_nll_rows(n, sequence)``, (N, W) current and initial NLLs, NaN
        where a row has no example. The same rewards without N per-example results."""
        if self.cfg.type == "cossim":
            z = learner.probe_embedding_means(self.probe_size)
            return cossim_rewards_finite(z, self.target)
        sequence = self.cfg.diff_scope == "sequence"
        return diff_rewards_rows(*learner.probe_nll_rows(self.probe_size, sequence))

    def state_dict(self) -> dict[str, Any]:
        """The EMA state (the last smoothed rewards) as plain data."""
        return {
            "type": self.cfg.type,
            "skill_names": list(self.skill_names),
            "prev": None if self._prev is None else self._prev.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; refuses a state from another reward or skill set."""
        if state.get("type") != self.cfg.type or state.get("skill_names") != self.skill_names:
            raise MosgymError(
                f"reward checkpoint: saved for reward '{state.get('type')}' on skills "
                f"{state.get('skill_names')}, but this run uses '{self.cfg.type}' on "
                f"{self.skill_names}; resume with the run's original env config"
            )
        prev = state.get("prev")
        self._prev = None if prev is None else np.asarray(prev, dtype=np.float64)
