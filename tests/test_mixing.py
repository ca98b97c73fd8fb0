"""Actions <-> mixtures (mosgym.envs.mixing), checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from mosgym.envs.mixing import action_to_mixture, mixture_to_action, validate_action
from mosgym.errors import MosgymError


def test_continuous_mixture_by_hand() -> None:
    # action [0.2, 0, -0.2] * scale 5 = logits [1, 0, -1] -> softmax = e^l / sum e^l
    p = action_to_mixture(np.array([0.2, 0.0, -0.2]), "continuous", 3, 5.0, 0.0)
    e = np.exp([1.0, 0.0, -1.0])
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-12)
    assert p.dtype == np.float64


def test_action_clipped_to_box() -> None:
    # 3 and -7 are clipped to 1 and -1: logits [2, -2]
    p = action_to_mixture(np.array([3.0, -7.0]), "continuous", 2, 2.0, 0.0)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-4)), 1 / (1 + np.exp(4))], rtol=1e-12)


def test_floor_by_hand() -> None:
    # uniform over 4 with floor 0.1: (1 - 0.4) * 0.25 + 0.1 = 0.25 (unchanged)
    p = action_to_mixture(np.zeros(4), "continuous", 4, 5.0, 0.1)
    np.testing.assert_allclose(p, np.full(4, 0.25))
    # one-hot arm 2 of 4 with floor 0.05: others 0.05, arm (1 - 0.2) * 1 + 0.05 = 0.85
    p = action_to_mixture(2, "discrete", 4, 5.0, 0.05)
    np.testing.assert_allclose(p, [0.05, 0.05, 0.85, 0.05])
    assert p.sum() == pytest.approx(1.0)


def test_discrete_one_hot() -> None:
    np.testing.assert_array_equal(action_to_mixture(1, "discrete", 3, 5.0, 0.0), [0, 1, 0])
    # SB3's predict returns a 0-d integer array
    np.testing.assert_array_equal(
        action_to_mixture(np.array(0, dtype=np.int64), "discrete", 3, 5.0, 0.0), [1, 0, 0]
    )
    np.testing.assert_array_equal(
        action_to_mixture(np.array([2]), "discrete", 3, 1.0, 0.0), [0, 0, 1]
    )


@pytest.mark.parametrize(
    "p",
    [[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4], [0.6, 0.05, 0.05, 0.3], [0.01, 0.99]],
)
def test_mixture_action_round_trip(p: list[float]) -> None:
    p = np.asarray(p)
    a = mixture_to_action(p, 5.0)
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    np.testing.assert_allclose(a.mean(), 0.0, atol=1e-6)  # centred logits
    np.testing.assert_allclose(action_to_mixture(a, "continuous", p.size, 5.0, 0.0), p, atol=1e-6)
    # and action -> mixture -> action
    np.testing.assert_allclose(
        mixture_to_action(action_to_mixture(a, "continuous", p.size, 5.0, 0.0), 5.0), a, atol=1e-6
    )


def test_round_trip_clips_extreme_mixtures() -> None:
    # log(1e-6 / 1) spread is 13.8 > 2 * scale 1: the action saturates at +-1
    a = mixture_to_action([1.0, 1e-6], 1.0)
    np.testing.assert_array_equal(a, [1.0, -1.0])
    p = action_to_mixture(a, "continuous", 2, 1.0, 0.0)
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))], rtol=1e-6)
    # zero weights are allowed (log guarded) and map to the box edge
    assert mixture_to_action([0.0, 1.0, 1.0], 5.0)[0] == -1.0


def test_mixture_to_action_normalises() -> None:
    np.testing.assert_allclose(
        mixture_to_action([2.0, 2.0, 4.0], 5.0),
        mixture_to_action([0.25, 0.25, 0.5], 5.0),
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "action",
    [
        np.array([np.nan, 0.0, 0.0]),
        np.array([np.inf, 0.0, 0.0]),
        np.array([0.0, 0.0]),
        np.zeros((1, 3)),
        np.array(["a", "b", "c"]),
        [[0.0], [1.0, 2.0]],
    ],
)
def test_bad_continuous_actions(action: object) -> None:
    with pytest.raises(MosgymError, match="action"):
        action_to_mixture(action, "continuous", 3, 5.0, 0.0)


@pytest.mark.parametrize("action", [3, -1, 1.0, np.nan, np.array([0, 1]), True])
def test_bad_discrete_actions(action: object) -> None:
    with pytest.raises(MosgymError, match="action"):
        validate_action(action, "discrete", 3)


def test_validate_returns_canonical_forms() -> None:
    out = validate_action(np.array([0.5, -0.5], dtype=np.float32), "continuous", 2)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert validate_action(np.int64(2), "discrete", 3) == 2


def test_bad_settings() -> None:
    with pytest.raises(MosgymError, match="floor"):
        action_to_mixture(np.zeros(4), "continuous", 4, 5.0, 0.3)  # > 1/N
    with pytest.raises(MosgymError, match="kind"):
        action_to_mixture(np.zeros(4), "box", 4, 5.0, 0.0)
    with pytest.raises(MosgymError, match="mixture"):
        mixture_to_action([0.0, 0.0], 5.0)
    with pytest.raises(MosgymError, match="mixture"):
        mixture_to_action([0.5, np.nan], 5.0)
    with pytest.raises(MosgymError, match="logit_scale"):
        mixture_to_action([0.5, 0.5], 0.0)
