"""Aggregate statistics checked against hand-computed numbers (rliable style)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from mosgym.analysis.stats import (
    TOO_FEW_RUNS_NOTE,
    area_under_curve,
    iqm,
    probability_of_improvement,
    probability_of_improvement_ci,
    speedup,
    steps_to_target,
    stratified_bootstrap_ci,
)


def test_iqm_by_hand() -> None:
    # 8 scores: 1..7 and 100; the middle half is 3, 4, 5, 6.
    assert iqm(np.array([[1, 2], [3, 4], [5, 6], [7, 100]])) == pytest.approx(4.5)
    # 10 scores: 2 cut on each side -> 1, 2, 3, 4, 5, 6.
    assert iqm(np.array([0, 0, 1, 2, 3, 4, 5, 6, 100, 1000])) == pytest.approx(3.5)


def test_probability_of_improvement_by_hand() -> None:
    x, y = np.array([[1.0], [3.0]]), np.array([[2.0], [2.0]])
    assert probability_of_improvement(x, y) == pytest.approx(2 / 4)
    # Ties count 1/2: pairs (2,2)=.5, (2,1)=1, (3,2)=1, (3,1)=1.
    x, y = np.array([[2.0], [3.0]]), np.array([[2.0], [1.0]])
    assert probability_of_improvement(x, y) == pytest.approx(3.5 / 4)
    assert probability_of_improvement(x, y, higher_is_better=False) == pytest.approx(0.5 / 4)
    # Two tasks: the average of the per-task probabilities (task 2: x always wins).
    x2 = np.array([[2.0, 10.0], [3.0, 10.0]])
    y2 = np.array([[2.0, 0.0], [1.0, 0.0]])
    assert probability_of_improvement(x2, y2) == pytest.approx((3.5 / 4 + 1.0) / 2)
    # Different run counts; never reaching a target (inf) ties with inf.
    x3, y3 = np.array([[np.inf], [5.0], [1.0]]), np.array([[np.inf], [3.0]])
    # lower is better: pairs (inf,inf)=.5, (inf,3)=0, (5,inf)=1, (5,3)=0, (1,inf)=1, (1,3)=1
    assert probability_of_improvement(x3, y3, False) == pytest.approx(3.5 / 6)


def test_probability_of_improvement_matches_mann_whitney() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(7, 1)).astype(float)  # many ties
    y = rng.integers(0, 5, size=(5, 1)).astype(float)
    u = mannwhitneyu(x[:, 0], y[:, 0]).statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / 35)


def test_probability_of_improvement_rejects_mismatch_and_nan() -> None:
    with pytest.raises(ValueError, match="tasks"):
        probability_of_improvement(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        probability_of_improvement(np.array([np.nan, 1.0]), np.array([1.0, 2.0]))


def test_auc_by_hand() -> None:
    # Trapezoids: (2+0)/2*1 + (0+2)/2*2 = 3 over a span of 3.
    assert area_under_curve(np.array([0, 1, 3]), np.array([2.0, 0.0, 2.0])) == pytest.approx(1.0)
    assert area_under_curve(np.array([10, 20]), np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert area_under_curve(np.array([5]), np.array([0.7])) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="increasing"):
        area_under_curve(np.array([0, 0]), np.array([1.0, 2.0]))


def test_steps_to_target_by_hand() -> None:
    steps, loss = np.array([0, 10, 20]), np.array([3.0, 2.0, 1.0])
    assert steps_to_target(steps, loss, 1.5) == pytest.approx(15.0)
    assert steps_to_target(steps, loss, 2.75) == pytest.approx(2.5)
    assert steps_to_target(steps, loss, 2.0) == pytest.approx(10.0)
    assert steps_to_target(steps, loss, 3.5) == pytest.approx(0.0)
    assert steps_to_target(steps, loss, 0.5) == math.inf
    # The first crossing counts, even if the curve goes back up.
    assert steps_to_target(steps, np.array([3.0, 1.0, 5.0]), 2.0) == pytest.approx(5.0)


def test_speedup() -> None:
    assert speedup(22.0, 10.0) == pytest.approx(2.2)
    assert speedup(10.0, math.inf) == 0.0
    assert speedup(math.inf, 10.0) == math.inf
    assert math.isnan(speedup(math.inf, math.inf))
    assert speedup(0.0, 0.0) == 1.0


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    scores = np.random.default_rng(1).normal(size=(5, 3))
    a = stratified_bootstrap_ci(scores, iqm, n_boot=500, seed=7)
    b = stratified_bootstrap_ci(scores, iqm, n_boot=500, seed=7)
    c = stratified_bootstrap_ci(scores, iqm, n_boot=500, seed=8)
    assert a == b and a != c
    assert a.lo < iqm(scores) < a.hi and not a.too_few_runs


def test_bootstrap_resamples_within_each_task() -> None:
    # Task 0 always 0, task 1 always 1: every stratified resample keeps one of each per row,
    # so the mean cannot move (an unstratified bootstrap would spread it).
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    lo, hi, few = stratified_bootstrap_ci(scores, np.mean, n_boot=200, seed=0)
    assert (lo, hi, few) == (0.5, 0.5, False)


def test_too_few_runs() -> None:
    ci = stratified_bootstrap_ci(np.array([[1.0, 2.0]]), iqm)
    assert math.isnan(ci.lo) and math.isnan(ci.hi) and ci.too_few_runs
    ci = probability_of_improvement_ci(np.array([[1.0]]), np.array([[1.0], [2.0]]))
    assert math.isnan(ci.lo) and ci.too_few_runs
    assert TOO_FEW_RUNS_NOTE == "too few seeds for an interval"


def test_probability_of_improvement_ci() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 1.0, size=(6, 2)), rng.normal(0.0, 1.0, size=(6, 2))
    ci = probability_of_improvement_ci(x, y, n_boot=300, seed=0)
    assert 0.0 <= ci.lo < probability_of_improvement(x, y) < ci.hi <= 1.0
    assert ci == probability_of_improvement_ci(x, y, n_boot=300, seed=0)
    # Separated agents: every resample says X always wins (or always loses, for losses).
    sep = probability_of_improvement_ci(x + 100, y, n_boot=100, seed=0)
    assert (sep.lo, sep.hi) == (1.0, 1.0)
    sep = probability_of_improvement_ci(x + 100, y, higher_is_better=False, n_boot=100, seed=0)
    assert (sep.lo, sep.hi) == (0.0, 0.0)


def test_interval_coverage_in_simulation() -> None:
    """A 95% interval for the mean covers the true mean in about 95% of seeded experiments."""
    start = time.perf_counter()
    rng = np.random.default_rng(2021)
    true_mean, n_exp, covered = 3.0, 200, 0
    for i in range(n_exp):
        scores = rng.normal(true_mean, 2.0, size=(20, 2))  # 20 seeds x 2 tasks
        lo, hi, _ = stratified_bootstrap_ci(scores, np.mean, n_boot=500, seed=i)
        covered += lo <= true_mean <= hi
    rate = covered / n_exp
    assert 0.90 <= rate <= 0.99, rate
    assert time.perf_counter() - start < 5.0
