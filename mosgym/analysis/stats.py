"""Honest aggregate statistics for comparing agents across seeds (Agarwal et al. 2021, rliable).

Pure functions over arrays. Scores come as a (runs, tasks) matrix: one row per seed, one column
per task (an environment, or a metric that is compared jointly). Point estimates are IQMs;
intervals are percentile intervals of a stratified bootstrap (runs resampled within each task)
with a seeded numpy Generator, so the same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.stats import trim_mean

TOO_FEW_RUNS_NOTE = "too few seeds for an interval"
"""What a caller reports when an interval is (nan, nan) because an agent has < 2 runs."""


class Interval(NamedTuple):
    """A confidence interval; `too_few_runs` means (nan, nan) because some input had < 2 runs."""

    lo: float
    hi: float
    too_few_runs: bool = False


def _as_matrix(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """(runs, tasks) float64 view; a 1-d array is one task."""
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty (runs, tasks) array, got shape {a.shape}")
    return a


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all run x task scores: the mean of the middle 50%.

    `scores` (runs, tasks) or (runs,). Robust to a few outlying seeds, yet uses half the data
    (unlike the median).
    """
    return float(trim_mean(_as_matrix(scores).ravel(), proportiontocut=0.25))


def _resample_indices(rng: np.random.Generator, runs: int, tasks: int, n_boot: int) -> np.ndarray:
    """(n_boot, runs, tasks) row indices drawn with replacement, independently per task."""
    return rng.integers(0, runs, size=(n_boot, runs, tasks))


def _percentile_interval(samples: np.ndarray, alpha: float) -> Interval:
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Interval(float(lo), float(hi))


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """(1 - alpha) percentile interval of `statistic` over a stratified bootstrap.

    `scores` (runs, tasks); `statistic` maps a (runs, tasks) matrix to a float. Each bootstrap
    sample redraws the runs with replacement separately within every task, as rliable does.
    With fewer than 2 runs there is no spread to resample: (nan, nan, too_few_runs=True).
    """
    a = _as_matrix(scores)
    runs, tasks = a.shape
    if runs < 2:
        return Interval(np.nan, np.nan, True)
    idx = _resample_indices(np.random.default_rng(seed), runs, tasks, n_boot)
    resampled = a[idx, np.arange(tasks)]  # (n_boot, runs, tasks)
    if statistic is iqm:  # one vectorised trimmed mean instead of n_boot Python calls
        samples = trim_mean(resampled.reshape(n_boot, -1), 0.25, axis=1)
    else:
        samples = np.array([statistic(r) for r in resampled])
    return _percentile_interval(samples, alpha)


def _poi_matrix(x: np.ndarray, y: np.ndarray) -> float:
    """Average over tasks of P(X > Y) + P(X = Y) / 2, for (runs_x, tasks) and (runs_y, tasks)."""
    gt = x[:, None, :] > y[None, :, :]
    eq = x[:, None, :] == y[None, :, :]
    per_task = (gt.sum(axis=(0, 1)) + 0.5 * eq.sum(axis=(0, 1))) / (x.shape[0] * y.shape[0])
    return float(per_task.mean())


def _check_pair(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, ...]:
    """Matrices oriented so that larger is better; same task count; no NaN (inf is fine)."""
    a, b = _as_matrix(x, "x"), _as_matrix(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x has {a.shape[1]} tasks but y has {b.shape[1]}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("probability of improvement: scores contain NaN; drop those runs first")
    return (a, b) if higher_is_better else (-a, -b)


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, higher_is_better: bool = True
) -> float:
    """P(X > Y): how likely a run of agent X beats a run of agent Y, averaged over tasks.

    `x` (runs_x, tasks), `y` (runs_y, tasks). Per task this is the Mann-Whitney U statistic
    divided by runs_x * runs_y, ties counting 1/2 (rliable's definition). For losses and
    steps-to-target pass `higher_is_better=False`.
    """
    a, b = _check_pair(x, y, higher_is_better)
    return _poi_matrix(a, b)


def probability_of_improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    higher_is_better: bool = True,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """(1 - alpha) stratified bootstrap interval of P(X > Y); both agents' runs are resampled.

    Shapes as in `probability_of_improvement`. (nan, nan, too_few_runs=True) when either agent
    has fewer than 2 runs.
    """
    a, b = _check_pair(x, y, higher_is_better)
    if a.shape[0] < 2 or b.shape[0] < 2:
        return Interval(np.nan, np.nan, True)
    rng = np.random.default_rng(seed)
    tasks = np.arange(a.shape[1])
    ia = _resample_indices(rng, a.shape[0], a.shape[1], n_boot)
    ib = _resample_indices(rng, b.shape[0], b.shape[1], n_boot)
    samples = np.array([_poi_matrix(a[i, tasks], b[j, tasks]) for i, j in zip(ia, ib, strict=True)])
    return _percentile_interval(samples, alpha)


def _check_curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, v = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if s.ndim != 1 or s.shape != v.shape or s.size == 0:
        raise ValueError(f"steps {s.shape} and values {v.shape} must be equal-length 1-d arrays")
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    return s, v


def area_under_curve(steps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under values(steps), divided by the step span: the curve's average level.

    `steps`, `values` (K,). Normalising makes curves logged over different spans comparable;
    a single point returns its value.
    """
    s, v = _check_curve(steps, values)
    if s.size == 1:
        return float(v[0])
    return float(np.trapezoid(v, s) / (s[-1] - s[0]))


def steps_to_target(steps: np.ndarray, values: np.ndarray, target: float) -> float:
    """First step at which a (loss) curve reaches <= `target`, linearly interpolated; inf if never.

    `steps`, `values` (K,). Between the last point above the target and the first at or below
    it the curve is taken as a straight line (the paper's "reached TEMP's loss 2.2x sooner").
    """
    s, v = _check_curve(steps, values)
    hit = np.flatnonzero(v <= target)
    if hit.size == 0:
        return float("inf")
    k = int(hit[0])
    if k == 0:
        return float(s[0])
    s0, s1, v0, v1 = s[k - 1], s[k], v[k - 1], v[k]
    return float(s0 + (v0 - target) / (v0 - v1) * (s1 - s0))


def speedup(ref_steps_to_target: float, agent_steps_to_target: float) -> float:
    """How many times sooner the agent reaches the target than the reference (ref / agent).

    > 1: the agent is faster. An agent that never reaches it gets 0, one that reaches it when
    the reference never does gets inf; nan when neither does.
    """
    ref, agent = float(ref_steps_to_target), float(agent_steps_to_target)
    if np.isinf(ref) and np.isinf(agent):
        return float("nan")
    if np.isinf(agent):
        return 0.0
    if agent == 0:
        return 1.0 if ref == 0 else float("inf")
    if np.isinf(ref):
        return float("inf")
    return ref / agent


def performance_profile(
    scores: np.ndarray, thresholds: np.ndarray, higher_is_better: bool = True
) -> np.ndarray:
    """Fraction of run x task scores beyond each threshold (rliable's performance profile).

    `scores` (runs, tasks) or (runs,), `thresholds` (K,) -> (K,): P(score > tau) when higher is
    better, P(score < tau) for losses. A whole distribution instead of one aggregate: one
    profile above another everywhere is better at every level.
    """
    a = _as_matrix(scores).ravel()
    t = np.asarray(thresholds, dtype=np.float64)
    beyond = a[None, :] > t[:, None] if higher_is_better else a[None, :] < t[:, None]
    return beyond.mean(axis=1)
