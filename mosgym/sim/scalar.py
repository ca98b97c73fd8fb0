"""One simulated run's dynamics in Python floats: the hot path of `SimLearner`.

The model is that of mosgym.sim.dynamics (`base_loss`, `overfit_gap`, `advance_exposure`),
which stays the definition for many runs at once (`BatchSim`) and for the calibration fit. One
run has N ~ 6 skills, and a numpy call on 6 numbers costs 10-50 times its arithmetic, so the
single run evaluates the same formulas per skill in Python floats, in the same order of
operations. + - * / and sqrt are correctly rounded in both, so each number is the same double
wherever numpy's exp, log1p and expm1 are the C library's and its sums and dot products of
fewer than 8 terms run left to right: x86-64 without AVX-512 (this project's machines), where
tests/test_sim.py checks it bitwise; elsewhere they agree to rounding (checked to 1e-12).
The one matrix product, transfer @ counts, stays in numpy.
"""

from __future__ import annotations

import math

import numpy as np

from mosgym.sim.dynamics import General


def _floats(x: np.ndarray) -> list[float]:
    return np.asarray(x, dtype=np.float64).tolist()


class ScalarDynamics:
    """Per-run dynamics over lists of N Python floats (constants converted once)."""

    def __init__(
        self,
        init: np.ndarray,
        floor: np.ndarray,
        rate: np.ndarray,
        exponent: np.ndarray,
        general: General,
        train_sizes: np.ndarray,
        overfit: np.ndarray,
        epochs0: np.ndarray,
        transfer: np.ndarray,
        forget: np.ndarray,
    ) -> None:
        self.n = len(init)
        self.floor, self.rate, self.exponent = _floats(floor), _floats(rate), _floats(exponent)
        self.span = _floats(np.asarray(init) - np.asarray(floor))  # numpy's own subtraction
        self.neg_exponent = [-x for x in self.exponent]
        self.neg_rate = [-x for x in self.rate]
        self.share = _floats(general.share)
        self.keep = _floats(1.0 - np.asarray(general.share, dtype=np.float64))
        # share 0 everywhere: share * g + 1.0 * f is f exactly, so the term is skipped
        self.has_general = any(x != 0.0 for x in self.share)
        self.general_rate, self.general_exponent = float(general.rate), float(general.exponent)
        self.train_sizes = [int(x) for x in train_sizes]
        self.overfit, self.epochs0 = _floats(overfit), _floats(epochs0)
        self.forget = _floats(forget)
        self.transfer_t = np.asarray(transfer, dtype=np.float64).T
        self._general: dict[int, float] = {}
        # Per-skill constants as tuples: a zip over them is the cheapest loop in Python.
        self._level_consts = list(
            zip(
                self.rate, self.exponent, self.neg_exponent, self.share, self.keep,
                self.floor, self.span, self.train_sizes, self.epochs0, self.overfit,
                strict=True,
            )
        )  # fmt: skip
        self._advance_consts = list(zip(self.forget, self.neg_rate, strict=True))

    def general_factor(self, total: int) -> float:
        """`General.factor` of `total` examples, remembered per total (episodes revisit them)."""
        g = self._general.get(total)
        if g is None:
            if len(self._general) > 100_000:  # bound the memory of unusual budgets
                self._general.clear()
            g = math.exp(-self.general_exponent * math.log1p(max(total, 0.0) / self.general_rate))
            self._general[total] = g
        return g

    def levels(
        self, exposure: list[float], consumed: list[int], total: int
    ) -> tuple[list[float], list[float], list[float]]:
        """(dev, train, base) lists: `base_loss` + `overfit_gap`; `total` = sum(consumed)."""
        general = self.has_general
        g = self.general_factor(total) if general else 0.0
        exp, log1p = math.exp, math.log1p
        dev, train, base = [], [], []
        for e, used, (rate, a, neg_a, share, keep, floor, span, size, epochs0, overfit) in zip(
            exposure, consumed, self._level_consts, strict=True
        ):
            s = e / rate
            if s < -1.0:  # np.maximum(s, -1.0) (NaN stays NaN)
                s = -1.0
            f = exp(neg_a * log1p(s)) if s >= 0 else 2.0 - exp(a * s)
            if general:
                f = share * g + keep * f
            b = floor + span * f
            over = used / size - epochs0
            gap = overfit * (0.0 if over < 0.0 else over)
            dev.append(b + gap)
            train.append(b * exp(-gap / b))
            base.append(b)
        return dev, train, base

    def advance(
        self, exposure: list[float], counts: np.ndarray, n_steps: int
    ) -> tuple[list[float], list[int]]:
        """(exposure after the interval, counts as ints): `advance_exposure` of one run."""
        gain = (counts @ self.transfer_t).tolist()
        c = counts.tolist()
        denom = float(max(sum(c), 1))
        exp, expm1 = math.exp, math.expm1
        out = []
        for e, g, k_i, (forget, neg_rate) in zip(
            exposure, gain, c, self._advance_consts, strict=True
        ):
            k = forget * (1.0 - k_i / denom) * n_steps
            x = e * exp(-k) + g * (1.0 if k < 1e-12 else -expm1(-k) / k)
            out.append(neg_rate if x < neg_rate else x)
        return out, c
