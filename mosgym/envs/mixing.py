"""Actions <-> mixtures: how an agent's action becomes the sampling distribution over skills.

The env applies `validate_action` then `action_to_mixture` to every action; agents that think
in mixtures (static priors, the MoS scorer, bandits) use `mixture_to_action`, its inverse.

The inverse is exact only for mixtures whose weights lie within a factor exp(2 * logit_scale)
of each other (`logit_span(p) <= logit_scale`): the action box [-1, 1] clips the rest, pulling
the extreme weights in. With the default logit_scale 5 a prior of sizes 1e6 vs 10 (PROP:
1e-5 for the small skill) trains on 4.5e-5. This is kept as it is, since changing the mapping
would change every existing config's numbers; static agents warn when their mixture is
clipped, and a larger action.logit_scale (up to 50) expresses such mixtures exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mosgym.errors import MosgymError

ACTION_KINDS = ("continuous", "discrete")
_MIN_PROB = 1e-12  # log(0) guard for mixture_to_action; far below any clip boundary


def _check_kind(kind: str) -> None:
    if kind not in ACTION_KINDS:
        raise MosgymError(f"action.kind: expected 'continuous' or 'discrete', got {kind!r}")


def validate_action(action: Any, kind: str, n: int) -> np.ndarray | int:
    """Check an agent's action and return it in canonical form.

    continuous: a finite (N,) array, returned as float64 (values outside [-1, 1] are clipped
    later by `action_to_mixture`). discrete: an integer in [0, N) (a Python/NumPy integer or a
    size-1 integer array, as SB3's `predict` returns), returned as int.
    Raises MosgymError naming the problem for NaN/inf, wrong shape or out-of-range arms.
    """
    _check_kind(kind)
    try:
        arr = np.asarray(action)
    except Exception:  # ragged lists and other non-array objects
        raise MosgymError(
            f"action {action!r}: not array-like; return an array from act()"
        ) from None
    if kind == "continuous":
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.number):
            raise MosgymError(
                f"action: expected a numeric array of shape ({n},) for the continuous action "
                f"space, got shape {arr.shape} dtype {arr.dtype}; check the agent's act()"
            )
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise MosgymError(
                f"action {arr.tolist()}: contains NaN or inf; the agent's policy diverged "
                "(lower its learning rate or check its inputs)"
            )
        return arr
    if arr.size != 1 or arr.ndim > 1:
        raise MosgymError(
            f"action: expected one skill index for the discrete action space, got shape "
            f"{arr.shape}; check the agent's act()"
        )
    value = arr.reshape(()).item()
    if not np.issubdtype(arr.dtype, np.integer):  # floats (NaN/inf included) and bools
        raise MosgymError(f"action {value!r}: expected an integer skill index in [0, {n})")
    if not 0 <= int(value) < n:
        raise MosgymError(f"action {int(value)}: skill index out of range [0, {n})")
    return int(value)


def _check_floor(floor: float, n: int) -> None:
    if not 0.0 <= floor <= 1.0 / n:
        raise MosgymError(
            f"action.floor: must lie in [0, 1/N] = [0, {1.0 / n:.4g}] for N={n} skills, got {floor}"
        )


def action_to_mixture(
    action: Any, kind: str, n: int, logit_scale: float, floor: float
) -> np.ndarray:
    """(N,) float64 mixture from an action (validated here as well).

    continuous: p = softmax(clip(action, -1, 1) * logit_scale); discrete: one-hot on the arm.
    Then the floor: (1 - N * floor) * p + floor, so every skill keeps at least `floor`.
    """
    action = validate_action(action, kind, n)
    _check_floor(floor, n)
    if kind == "continuous":
        logits = np.clip(action, -1.0, 1.0) * float(logit_scale)
        z = np.exp(logits - logits.max())
        p = z / z.sum()
    else:
        p = np.zeros(n)
        p[int(action)] = 1.0
    return (1.0 - n * floor) * p + floor


def logit_span(p: Any) -> float:
    """The smallest logit_scale at which mixture `p` is an action exactly:
    max_i |log p_i - mean_n log p_n| (inf when a weight is 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_p = np.log(p / p.sum())
    return float(np.max(np.abs(log_p - log_p.mean()))) if np.all(p > 0) else math.inf


def mixture_to_action(p: Any, logit_scale: float) -> np.ndarray:
    """(N,) float32 continuous action whose mixture is `p` (before any floor).

    The centred log-probabilities divided by `logit_scale`, clipped to [-1, 1]: exact whenever
    max_i |log p_i - mean log p| <= logit_scale, otherwise the most extreme weights are pulled
    in. `p` may be unnormalised; it must be finite, non-negative and not all zero.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise MosgymError(
            f"mixture {np.asarray(p).tolist()}: expected a 1-D array of finite, non-negative "
            "weights that are not all zero"
        )
    if not logit_scale > 0:
        raise MosgymError(f"action.logit_scale: must be > 0, got {logit_scale}")
    log_p = np.log(np.maximum(p / p.sum(), _MIN_PROB))
    return np.clip((log_p - log_p.mean()) / logit_scale, -1.0, 1.0).astype(np.float32)
