"""Rewards checked against hand-computed numbers (MOS.md, "Rewards")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mosgym.config import RewardConfig
from mosgym.errors import MosgymError
from mosgym.learner.base import ProbeResult, TrainStats
from mosgym.rewards import (
    RewardComputer,
    cossim_rewards,
    cossim_target_rewards,
    dataset_embeddings,
    diff_rewards,
    ema_update,
    excess_loss,
    learning_progress,
    mospec_diff,
    temperature_prior,
)

R2 = 1 / math.sqrt(2)
# Three skills with 2-d embeddings: e1, e2 and their diagonal.
Z = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
COSSIM_Z = [(1 + 0 + R2) / 3, (0 + 1 + R2) / 3, (R2 + R2 + 1) / 3]


def probe(
    nll: list[float],
    init: list[float],
    emb: list[list[float]],
    seq: list[float] | None = None,
    init_seq: list[float] | None = None,
    skipped: int = 0,
) -> ProbeResult:
    return ProbeResult(
        ids=[str(i) for i in range(len(nll))],
        nll=np.array(nll),
        init_nll=np.array(init),
        seq_nll=np.array(seq if seq is not None else nll),
        init_seq_nll=np.array(init_seq if init_seq is not None else init),
        embeddings=np.array(emb, dtype=np.float32),
        n_skipped=skipped,
    )


class FakeLearner:
    """Only the Learner methods the rewards use; records every call."""

    def __init__(self, probes: list[ProbeResult] | None = None) -> None:
        self.skill_names = ["a", "b", "c"][: len(probes) if probes else 3]
        self.probes = probes or []
        self.calls: list[tuple] = []

    def probe(self, skill: int, n: int, with_initial: bool = True) -> ProbeResult:
        self.calls.append(("probe", skill, n, with_initial))
        return self.probes[skill]

    def gradient_alignment(self, n: int, target: int | None = None) -> np.ndarray:
        self.calls.append(("gradient_alignment", n, target))
        return np.array([0.5, -0.25, 0.0])

    def uncertainty(self, n: int, samples: int) -> np.ndarray:
        self.calls.append(("uncertainty", n, samples))
        return np.array([1.0, 2.0, 3.0])


# Skill probes: two examples each; DIFF over responses and over whole sequences differ.
PROBES = [
    probe([1.0, 2.0], [1.0, 1.5], [[1, 0], [1, 0]], seq=[0.5, 0.5], init_seq=[0.5, 0.5]),
    probe([0.5, 0.5], [1.0, 1.0], [[0, 1], [0, 3]], seq=[1.0, 1.0], init_seq=[0.0, 0.0]),
    probe([2.0, 2.0], [2.0, 2.0], [[1, 1], [2, 2]], seq=[2.0, 2.0], init_seq=[2.0, 2.0]),
]
DIFF_RESPONSE = [(1 + math.exp(0.5)) / 2, math.exp(-0.5), 1.0]
DIFF_SEQUENCE = [1.0, math.e, 1.0]


def computer(**kw) -> RewardComputer:
    return RewardComputer(RewardConfig(**kw), ["a", "b", "c"], probe_size=8)


# ---- pure functions --------------------------------------------------------------------------


def test_temperature_prior_by_hand() -> None:
    sizes = np.array([1, 3])
    np.testing.assert_allclose(temperature_prior(sizes, 1.0), [0.25, 0.75])
    a, b = 0.25**0.1, 0.75**0.1
    np.testing.assert_allclose(temperature_prior(sizes, 10.0), [a / (a + b), b / (a + b)])
    np.testing.assert_allclose(temperature_prior(sizes, 10.0), [0.472563, 0.527437], atol=1e-6)
    np.testing.assert_allclose(temperature_prior(sizes, math.inf), [0.5, 0.5])


@pytest.mark.parametrize("sizes,tau", [([1, 0], 1.0), ([], 1.0), ([1, 2], 0.0), ([1, 2], -1.0)])
def test_temperature_prior_rejects_bad_input(sizes: list[int], tau: float) -> None:
    with pytest.raises(MosgymError):
        temperature_prior(np.array(sizes), tau)


def test_dataset_embeddings_mean_and_nan_rows() -> None:
    z = dataset_embeddings(
        [np.array([[1.0, 0.0], [3.0, 2.0]]), np.array([[np.nan, 1.0], [2.0, 4.0]])]
    )
    np.testing.assert_allclose(z, [[2.0, 1.0], [2.0, 4.0]])
    assert np.isnan(dataset_embeddings([np.array([[np.nan, 0.0]])])).all()


def test_cossim_by_hand() -> None:
    np.testing.assert_allclose(cossim_rewards(Z), COSSIM_Z)
    np.testing.assert_allclose(cossim_rewards(Z), [0.569036, 0.569036, 0.804738], atol=1e-6)
    # Scale does not matter; only directions do.
    np.testing.assert_allclose(cossim_rewards(Z * [[5.0], [0.1], [3.0]]), COSSIM_Z)


def test_cossim_nan_row_spoils_only_itself() -> None:
    z = np.array([[1.0, 0.0], [np.nan, np.nan], [1.0, 1.0]])
    r = cossim_rewards(z)
    assert np.isnan(r[1])
    np.testing.assert_allclose(r[[0, 2]], [(1 + R2) / 2, (R2 + 1) / 2])


def test_cossim_target_by_hand() -> None:
    np.testing.assert_allclose(cossim_target_rewards(Z, 0), [1.0, 0.0, R2])
    np.testing.assert_allclose(cossim_target_rewards(Z, 2), [R2, R2, 1.0])


def test_diff_by_hand() -> None:
    r = diff_rewards(
        [np.array([1.0, 2.0]), np.array([0.5]), np.array([np.nan])],
        [np.array([1.0, 1.5]), np.array([1.0]), np.array([1.0])],
    )
    np.testing.assert_allclose(r[:2], [(1 + 1.6487212707) / 2, 0.6065306597])
    assert np.isnan(r[2])


def test_diff_is_stable_for_large_differences() -> None:
    r = diff_rewards([np.array([800.0, 800.0])], [np.array([0.0, 0.0])])
    assert np.isinf(r[0])  # overflow is reported as inf, never as NaN
    r = diff_rewards([np.array([0.0, 700.0])], [np.array([0.0, 0.0])])
    np.testing.assert_allclose(r[0], math.exp(700) / 2, rtol=1e-12)


def test_mospec_diff_doubles_the_target_only() -> None:
    r = np.array([1.0, 0.5, 2.0])
    np.testing.assert_allclose(mospec_diff(r, 1), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(r, [1.0, 0.5, 2.0])  # input untouched


def test_ema_sequence_by_hand() -> None:
    s1 = ema_update(None, np.array([2.0, 0.0]), 0.9)
    np.testing.assert_allclose(s1, [0.9 * 2 + 0.1 * 1, 0.1])  # Rbar_0 = 1
    s2 = ema_update(s1, np.array([1.0, 1.0]), 0.9)
    np.testing.assert_allclose(s2, [0.9 + 0.1 * 1.9, 0.9 + 0.1 * 0.1])
    np.testing.assert_allclose(ema_update(s2, np.array([3.0, 4.0]), 1.0), [3.0, 4.0])


def test_loss_signals_by_hand() -> None:
    np.testing.assert_allclose(learning_progress([2.0, 1.0], [1.5, 1.25]), [0.5, -0.25])
    np.testing.assert_allclose(excess_loss([1.5, 3.0], [2.0, 2.0]), [-0.5, 1.0])


# ---- RewardComputer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope,expected", [("response", DIFF_RESPONSE), ("sequence", DIFF_SEQUENCE)]
)
def test_diff_scopes_through_learner(scope: str, expected: list[float]) -> None:
    learner = FakeLearner(PROBES)
    rc = computer(type="diff", diff_scope=scope)
    res = rc.compute(learner)
    np.testing.assert_allclose(res.raw, expected)
    np.testing.assert_allclose(res.smoothed, expected)
    assert learner.calls == [("probe", i, 8, True) for i in range(3)]  # DIFF needs theta_0
    assert rc.needs_probes


def test_cossim_through_learner_and_mospec() -> None:
    # Dataset embeddings are the means: (1,0), (0,2), (1.5,1.5) -> same directions as Z.
    learner = FakeLearner(PROBES)
    np.testing.assert_allclose(computer(type="cossim").compute(learner).raw, COSSIM_Z)
    assert learner.calls == [("probe", i, 8, False) for i in range(3)]  # no initial-model NLL
    res = computer(type="cossim", target="c").compute(FakeLearner(PROBES))
    np.testing.assert_allclose(res.raw, [R2, R2, 1.0])


def test_mospec_diff_through_learner() -> None:
    res = computer(type="diff", target="a").compute(FakeLearner(PROBES))
    np.testing.assert_allclose(res.raw, [2 * DIFF_RESPONSE[0]] + DIFF_RESPONSE[1:])


def test_ema_through_computer_and_state_dict() -> None:
    rc = computer(type="diff", diff_scope="sequence", ema=True, ema_beta=0.9)
    s1 = rc.compute(FakeLearner(PROBES)).smoothed
    np.testing.assert_allclose(s1, [1.0, 0.9 * math.e + 0.1, 1.0])
    state = rc.state_dict()
    resumed = computer(type="diff", diff_scope="sequence", ema=True, ema_beta=0.9)
    resumed.load_state_dict(state)
    s2 = resumed.compute(FakeLearner(PROBES)).smoothed
    np.testing.assert_allclose(s2, [1.0, 0.9 * math.e + 0.1 * s1[1], 1.0])
    resumed.reset()
    np.testing.assert_allclose(resumed.compute(FakeLearner(PROBES)).smoothed, s1)
    with pytest.raises(MosgymError, match="reward checkpoint"):
        computer(type="cossim").load_state_dict(state)


def test_baselines_call_the_right_learner_method() -> None:
    learner = FakeLearner()
    rc = computer(type="multidds", target="b")
    np.testing.assert_allclose(rc.compute(learner).raw, [0.5, -0.25, 0.0])
    rc = computer(type="multiuat", uat_samples=3)
    np.testing.assert_allclose(rc.compute(learner).raw, [1.0, 2.0, 3.0])
    assert learner.calls == [("gradient_alignment", 8, 1), ("uncertainty", 8, 3)]
    assert not rc.needs_probes


def test_loss_rewards_use_no_probes() -> None:
    learner = FakeLearner()  # no probes: any probe call would fail
    stats = TrainStats(
        examples=np.array([2, 4, 1]),
        tokens=np.array([20, 40, 10]),
        loss_sum=np.array([3.0, 2.0, 0.5]),
        step_losses=np.array([1.0]),
    )
    dev, init = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    raw = computer(type="train_loss").compute(learner, train_stats=stats).raw
    np.testing.assert_allclose(raw, [1.5, 0.5, 0.5])
    lp = computer(type="learning_progress")
    np.testing.assert_allclose(lp.compute(learner, None, dev, None, init).raw, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(lp.compute(learner, None, dev * 0.5, dev, init).raw, [0.5, 1.0, 1.5])
    mp = computer(type="mean_progress")
    np.testing.assert_allclose(mp.compute(learner, None, dev, None, init).raw, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(mp.compute(learner, None, dev * 0.5, dev, init).raw, [1.0] * 3)
    exc = computer(type="excess_loss").compute(learner, None, dev, None, init).raw
    np.testing.assert_allclose(exc, [-1.0, 0.0, 1.0])
    assert learner.calls == []


def test_fallback_never_nan() -> None:
    nan_probe = probe([np.nan, np.nan], [1.0, 1.0], [[np.nan, 0], [np.nan, 0]], skipped=3)
    probes = [PROBES[0], nan_probe, PROBES[2]]
    rc = computer(type="diff", ema=True)
    res = rc.compute(FakeLearner(probes))
    # First update: the mean of the others' raw rewards.
    mean_others = (DIFF_RESPONSE[0] + DIFF_RESPONSE[2]) / 2
    np.testing.assert_allclose(res.raw, [DIFF_RESPONSE[0], mean_others, 1.0])
    assert res.fallback.tolist() == [False, True, False] and res.n_fallback == 1
    assert res.probe_skipped == 3 + 2
    # Next update: the skill keeps its previous smoothed value.
    res2 = rc.compute(FakeLearner(probes))
    np.testing.assert_allclose(res2.raw[1], res.smoothed[1])
    np.testing.assert_allclose(res2.smoothed[1], res.smoothed[1])
    # Every skill fails on the first update: 1.0 everywhere.
    res3 = computer(type="cossim").compute(FakeLearner([nan_probe] * 3))
    np.testing.assert_allclose(res3.smoothed, [1.0, 1.0, 1.0])
    assert res3.probe_skipped == 3 * (3 + 2)


def test_train_loss_fallback_for_undrawn_skill() -> None:
    stats = TrainStats(
        examples=np.array([2, 0, 1]),
        tokens=np.array([20, 0, 10]),
        loss_sum=np.array([3.0, 0.0, 0.5]),
        step_losses=np.array([1.0]),
    )
    res = computer(type="train_loss").compute(FakeLearner(), train_stats=stats)
    np.testing.assert_allclose(res.raw, [1.5, 1.0, 0.5])
    assert np.isfinite(res.smoothed).all()


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"type": "perplexity"}, "reward.type"),
        ({"diff_scope": "all"}, "reward.diff_scope"),
        ({"ema_beta": 0.0}, "reward.ema_beta"),
        ({"ema_beta": 1.5}, "reward.ema_beta"),
        ({"target": "d"}, "reward.target"),
        ({"type": "train_loss", "target": "a"}, "reward.target"),
        ({"type": "multiuat", "target": "a"}, "reward.target"),
        ({"type": "multiuat", "uat_samples": 0}, "reward.uat_samples"),
    ],
)
def test_bad_config_raises(kw: dict, field: str) -> None:
    with pytest.raises(MosgymError, match=field.replace(".", r"\.")):
        computer(**kw)


def test_bad_probe_size_raises() -> None:
    with pytest.raises(MosgymError, match="probe_size"):
        RewardComputer(RewardConfig(), ["a", "b"], probe_size=0)


def test_error_lists_valid_values() -> None:
    with pytest.raises(MosgymError, match="cossim, diff, multidds"):
        computer(type="nope")
    with pytest.raises(MosgymError, match="response, sequence"):
        computer(diff_scope="nope")
    with pytest.raises(MosgymError, match="a, b, c"):
        computer(target="nope")


def test_none_reward_is_zero_and_costs_nothing() -> None:
    learner = FakeLearner()  # any learner call would be recorded
    result = computer(type="none", ema=True).compute(learner)
    np.testing.assert_array_equal(result.raw, [0.0, 0.0, 0.0])
    assert learner.calls == []
    assert not computer(type="none").needs_probes
