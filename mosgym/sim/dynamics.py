"""The simulator's learning dynamics as pure functions over arrays of shape (..., N).

Shared by `SimLearner` (one run, shape (N,)), `BatchSim` (M runs, shape (M, N)) and the
calibration fit, so all three follow exactly the same model (see mosgym.sim.learner's docstring
for the model and why it has this form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class General:
    """The skill-agnostic part of learning (the response format, the output alphabet): a share of
    each skill's learnable loss that falls with the examples of *every* skill, G in total.
    share (N,) in [0, 1); rate and exponent scalars. share 0: none (the plain per-skill model).
    """

    share: np.ndarray
    rate: float = 1.0
    exponent: float = 1.0

    def factor(self, total: np.ndarray) -> np.ndarray:
        """(..., 1) remaining fraction of the general part after `total` (..., 1) examples."""
        return np.exp(-self.exponent * np.log1p(np.maximum(total, 0.0) / self.rate))


def base_loss(
    exposure: np.ndarray,
    init: np.ndarray,
    floor: np.ndarray,
    rate: np.ndarray,
    exponent: np.ndarray,
    general: General | None = None,
    total: np.ndarray | None = None,
) -> np.ndarray:
    """(..., N) loss before overfitting: floor + (init - floor) * f, where
    f = (1 + E/rate)^-exponent, or with a general part
    f = share * (1 + G/g_rate)^-g_exponent + (1 - share) * (1 + E/rate)^-exponent,
    G = `total` (..., 1), the examples of all skills consumed so far."""
    s = np.maximum(exposure / rate, -1.0)
    # E < 0 (net negative transfer): 2 - exp(exponent * s) has the power law's value and slope
    # at 0 and never passes 2, so interference at most doubles the learnable loss (a plain
    # exponential continuation reached e^exponent times it, up to 148x, which RL agents exploit).
    factor = np.where(
        s >= 0,
        np.exp(-exponent * np.log1p(np.maximum(s, 0.0))),
        2.0 - np.exp(exponent * np.minimum(s, 0.0)),
    )
    if general is not None and total is not None:
        factor = general.share * general.factor(total) + (1.0 - general.share) * factor
    return floor + (init - floor) * factor


def overfit_gap(
    consumed: np.ndarray, train_sizes: np.ndarray, overfit: np.ndarray, epochs0: np.ndarray
) -> np.ndarray:
    """(..., N) memorisation gap: overfit * max(0, epochs consumed - epochs0)."""
    return overfit * np.maximum(consumed / train_sizes - epochs0, 0.0)


def advance_exposure(
    exposure: np.ndarray,
    counts: np.ndarray,
    n_steps: np.ndarray | int,
    transfer: np.ndarray,
    forget: np.ndarray,
    rate: np.ndarray,
) -> np.ndarray:
    """(..., N) exposure after an interval of `n_steps` steps drawing `counts` (..., N) examples.

    Solves dE/dt = g/n - k E over the interval: gain g = transfer @ counts, decay
    k = forget * (1 - share of skill i in the interval's batches).
    """
    gain = counts @ transfer.T
    total = counts.sum(axis=-1, keepdims=True)
    share = counts / np.maximum(total, 1.0)
    k = forget * (1.0 - share) * (n_steps if np.isscalar(n_steps) else n_steps[..., None])
    small = k < 1e-12
    gain_factor = np.where(small, 1.0, -np.expm1(-k) / np.where(small, 1.0, k))
    return np.maximum(exposure * np.exp(-k) + gain * gain_factor, -rate)


def progress(base: np.ndarray, init: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """(..., N) share of the learnable loss removed, in [-1, 1] (negative: worse than init)."""
    return np.clip((init - base) / (init - floor), -1.0, 1.0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def gradient_directions(transfer: np.ndarray) -> np.ndarray:
    """(N, N) unit rows whose Gram matrix approximates the normalised symmetric transfer."""
    s = (transfer + transfer.T) / 2.0
    d = 1.0 / np.sqrt(np.abs(np.diag(s)))
    s = s * d[:, None] * d[None, :]
    w, v = np.linalg.eigh(s)
    g = v * np.sqrt(np.maximum(w, 1e-3))
    return unit_rows(g)


@dataclass
class ProbeDraw:
    """The randomness of one probe of every skill, drawn at once (one call per kind of noise).

    Row i serves skill i, padded to the widest row W: `idx[i, :size[i]]` example indices
    (uniform without replacement, size[i] = min(n, pool_i)), `eps` (N, W) standard normal NLL
    noise, `emb` (N, W, H) float32 standard normal embedding noise. `taken[i]` marks rows
    already handed out, so every probe gets fresh noise.
    """

    n: int
    idx: np.ndarray
    size: np.ndarray
    eps: np.ndarray
    emb: np.ndarray
    taken: np.ndarray


def draw_probes(rng: np.random.Generator, pools: list[int], n: int, embed_dim: int) -> ProbeDraw:
    """One `ProbeDraw` for probes of `n` examples from each skill's pool of `pools[i]` examples.

    The same distribution as drawing each skill's probe separately, at one generator call per
    kind of noise instead of one per skill (what makes the simulator's reward path cheap).
    """
    size = np.minimum(n, pools)
    idx = np.zeros((len(pools), int(size.max())), dtype=np.int64)
    for i, (m, k) in enumerate(zip(pools, size, strict=True)):
        idx[i, :k] = rng.choice(m, k, replace=False)
    eps = rng.standard_normal(idx.shape)
    emb = rng.standard_normal((*idx.shape, embed_dim), dtype=np.float32)
    return ProbeDraw(n, idx, size, eps, emb, np.zeros(len(pools), dtype=bool))


def sample_distinct(
    rng: np.random.Generator, pools: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row i: `size[i]` distinct indices, uniform from range(pools[i]), every row at once.

    Returns (idx, keep), both (N, W): the kept entries of row i are its sample. Candidates are
    drawn with replacement and each row keeps its first size[i] distinct ones, which is
    sequential rejection sampling: every kept index is uniform over those not kept before, so
    the kept set is a uniform sample without replacement (the distribution of
    ``Generator.choice(pool, size, replace=False)``, in a few calls for all rows instead of one
    per row). A row that samples more than half its pool, or (rarely) runs out of
    candidates, is drawn by `Generator.choice`.
    """
    pools, size = np.asarray(pools, np.int64), np.asarray(size, np.int64)
    width = 2 * int(size.max()) + 16  # >= 1.4x the candidates a half-pool sample needs on average
    idx = rng.integers(0, pools[:, None], (len(pools), width))
    order = np.argsort(idx, axis=1, kind="stable")  # stable: repeats keep their draw order
    ranked = np.take_along_axis(idx, order, axis=1)
    first = np.ones(idx.shape, dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    new = np.empty_like(first)
    np.put_along_axis(new, order, first, axis=1)  # first occurrences, in draw order
    keep = new & (np.cumsum(new, axis=1) <= size[:, None])
    for i in np.flatnonzero((2 * size > pools) | (keep.sum(axis=1) < size)):
        keep[i] = False
        keep[i, : size[i]] = True
        idx[i, : size[i]] = rng.choice(pools[i], size[i], replace=False)
    return idx, keep
