"""Fitting the simulator's dynamics to dev-loss curves: pure functions on arrays.

The MLflow side (reading runs, writing the YAML and the report, the CLI) is mosgym.calibrate.
What is fitted: per skill the floor loss, rate, exponent, overfitting slope, forgetting rate and
general share, the general part's rate and exponent, and the off-diagonal transfer matrix, by
least squares (scipy.optimize.least_squares) on the log
of the per-skill dev-loss curves, each run replayed through the simulator's own dynamics
(mosgym.sim.dynamics) from its logged per-skill exposure. The initial loss is the mean
dev loss at step 0; `overfit_epochs` is fixed (an argument): with the kink of max(0, .) free as
well, the fit is poorly determined on runs that barely repeat their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from mosgym.errors import MosgymError
from mosgym.sim.dynamics import General, advance_exposure, base_loss, overfit_gap


@dataclass
class RunCurves:
    """One logged run. K+1 logged points, N skills."""

    run_id: str
    steps: np.ndarray
    """(K+1,) optimizer steps, starting at 0."""
    examples: np.ndarray
    """(K+1, N) cumulative examples drawn per skill."""
    dev_loss: np.ndarray
    """(K+1, N) dev loss per skill."""
    group: str = ""
    """Mixture policy (agent name): held-out splits never separate a group."""


@dataclass
class FitResult:
    """Fitted dynamics parameters, each (N,) except transfer (N, N)."""

    init_loss: np.ndarray
    floor_loss: np.ndarray
    rate: np.ndarray
    exponent: np.ndarray
    transfer: np.ndarray
    overfit: np.ndarray
    overfit_epochs: np.ndarray
    forget: np.ndarray
    general_share: np.ndarray | None = None
    """(N,) skill-agnostic share of the learnable loss (None: 0, no general part)."""
    general_rate: float = 1.0
    general_exponent: float = 1.0
    cost: float = float("nan")
    """Final least-squares cost (half the sum of squared log residuals, plus the transfer
    ridge's penalty when there is one)."""

    def general(self) -> General | None:
        if self.general_share is None:
            return None
        return General(self.general_share, self.general_rate, self.general_exponent)

    def sim_block(self) -> dict[str, Any]:
        """The fitted keys of a `sim:` block, as plain YAML data."""

        def r(x: np.ndarray) -> Any:
            return np.round(x, 6).tolist()

        share = np.zeros_like(self.init_loss) if self.general_share is None else self.general_share
        return {
            "general_share": r(share),
            "general_rate": round(float(self.general_rate), 6),
            "general_exponent": round(float(self.general_exponent), 6),
            "init_loss": r(self.init_loss),
            "floor_loss": r(self.floor_loss),
            "rate": r(self.rate),
            "exponent": r(self.exponent),
            "transfer": r(self.transfer),
            "overfit": r(self.overfit),
            "overfit_epochs": r(self.overfit_epochs),
            "forget": r(self.forget),
        }


# --------------------------------------------------------------------------------------------
# Pure part: curves and exposures -> parameters


def simulate_dev_loss(
    fit: FitResult, steps: np.ndarray, examples: np.ndarray, train_sizes: np.ndarray
) -> np.ndarray:
    """(R, K+1, N) dev loss the simulator predicts for R runs sharing the `steps` (K+1,) grid.

    `examples` (R, K+1, N) cumulative examples per skill; the intervals are replayed exactly as
    SimLearner.train advances them.
    """
    examples = np.asarray(examples, dtype=np.float64)
    dn, dt = np.diff(examples, axis=1), np.diff(steps)
    e = np.zeros((examples.shape[0], examples.shape[2]))
    out = np.empty_like(examples)
    for k in range(examples.shape[1]):
        if k:
            e = advance_exposure(e, dn[:, k - 1], dt[k - 1], fit.transfer, fit.forget, fit.rate)
        total = examples[:, k].sum(axis=-1, keepdims=True)
        base = base_loss(
            e, fit.init_loss, fit.floor_loss, fit.rate, fit.exponent, fit.general(), total
        )
        out[:, k] = base + overfit_gap(examples[:, k], train_sizes, fit.overfit, fit.overfit_epochs)
    return out


def _grids(runs: list[RunCurves]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Runs stacked by identical step grids: [(steps, examples (R,K+1,N), dev (R,K+1,N))]."""
    groups: dict[tuple[int, ...], list[RunCurves]] = {}
    for run in runs:
        groups.setdefault(tuple(int(s) for s in run.steps), []).append(run)
    return [
        (np.array(k), np.stack([r.examples for r in rs]), np.stack([r.dev_loss for r in rs]))
        for k, rs in groups.items()
    ]


@dataclass
class _Layout:
    """Which parameters are free, and how they sit in least_squares' vector."""

    n: int
    overfit_mask: np.ndarray
    """(N,) bool: skills whose overfitting slope is free (only those repeated past epochs0)."""
    fit_forget: bool
    fit_transfer: bool
    fit_general: bool = True
    off: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.off = ~np.eye(self.n, dtype=bool)

    def unpack(self, x: np.ndarray, init: np.ndarray, epochs0: np.ndarray) -> FitResult:
        n, i = self.n, 3 * self.n
        overfit, forget, transfer = np.zeros(n), np.zeros(n), np.eye(n)
        m = int(self.overfit_mask.sum())
        overfit[self.overfit_mask], i = x[i : i + m], i + m
        if self.fit_forget:
            forget, i = x[i : i + n], i + n
        general: dict[str, Any] = {}
        if self.fit_general:
            general = {
                "general_share": x[i : i + n],
                "general_rate": float(np.exp(x[i + n])),
                "general_exponent": float(x[i + n + 1]),
            }
            i += n + 2
        if self.fit_transfer:
            transfer = np.eye(n)
            transfer[self.off] = x[i:]
        return FitResult(
            init, x[:n], np.exp(x[n : 2 * n]), x[2 * n : 3 * n], transfer, overfit, epochs0,
            forget, **general,
        )  # fmt: skip

    def start_and_bounds(
        self,
        init: np.ndarray,
        floor0: np.ndarray,
        rate0: np.ndarray,
        exponent0: float,
        general_rate0: float = 100.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        x = [floor0, np.log(rate0), np.full(n, exponent0)]
        lo = [np.zeros(n), np.full(n, np.log(1e-2)), np.full(n, 0.02)]
        hi = [init * 0.999, np.full(n, np.log(1e8)), np.full(n, 5.0)]
        m = int(self.overfit_mask.sum())
        for k, start, upper in ((m, 1e-4, 10.0), (n if self.fit_forget else 0, 1e-5, 0.5)):
            x.append(np.full(k, start))
            lo.append(np.zeros(k))
            hi.append(np.full(k, upper))
        if self.fit_general:  # shares, log rate, exponent
            x.append(np.array([*np.full(n, 0.5), np.log(general_rate0), 1.0]))
            lo.append(np.array([*np.zeros(n), np.log(1.0), 0.02]))
            hi.append(np.array([*np.full(n, 0.99), np.log(1e8), 5.0]))
        if self.fit_transfer:
            m = n * (n - 1)
            x.append(np.zeros(m))
            lo.append(np.full(m, -1.0))
            hi.append(np.full(m, 1.0))
        return np.concatenate(x), np.concatenate(lo), np.concatenate(hi)


def group_of(run: RunCurves) -> str:
    """The mixture group a run belongs to (its own id when it has none): what hold-outs and
    cross-validation keep together."""
    return run.group or run.run_id


def _check_runs(runs: list[RunCurves], train_sizes: np.ndarray) -> int:
    if not runs:
        raise MosgymError("calibration: no runs to fit (log some runs of the real env first)")
    n = len(train_sizes)
    for r in runs:
        k = len(r.steps)
        if r.examples.shape != (k, n) or r.dev_loss.shape != (k, n) or k < 2:
            raise MosgymError(
                f"calibration: run {r.run_id} has curves of shape {r.dev_loss.shape} for "
                f"{n} skills; every run needs >= 2 logged points of every skill"
            )
        if r.steps[0] != 0:
            raise MosgymError(
                f"calibration: run {r.run_id} has no point at step 0 (the initial dev loss)"
            )
        if not (np.all(np.isfinite(r.dev_loss)) and np.all(r.dev_loss > 0)):
            raise MosgymError(f"calibration: run {r.run_id} has non-positive or NaN dev losses")
    return n


def fit_sim_params(
    runs: list[RunCurves],
    train_sizes: np.ndarray,
    *,
    overfit_epochs: float = 1.0,
    fit_overfit: bool = True,
    fit_forget: bool = True,
    fit_transfer: bool = True,
    fit_general: bool = True,
    exponent_starts: tuple[float, ...] = (0.3, 1.0),
    transfer_ridge: float = 0.0,
) -> FitResult:
    """Least-squares fit of the dynamics parameters to dev-loss curves against exposure.

    `transfer_ridge` (lambda >= 0) adds lambda * sum(transfer_ij^2) to the squared log
    residuals: a coefficient the runs do not determine (two skills never both weighted in any
    run) then stays near 0 instead of wandering to its bound, where a policy that does weight
    both would meet it (the SmolLM2 calibration's copy -> count = -1.0; paper/README.md).
    lambda = inf is the limit, no transfer at all (the transfer matrix stays the identity).
    Overfitting slopes are fitted only for skills repeated beyond `overfit_epochs` somewhere in
    `runs` (elsewhere they are unobservable and set to 0). Residuals are log(predicted) -
    log(observed) at every logged point after step 0, so each skill's curve counts relatively
    (a low-loss skill is not drowned by a high-loss one). The best of a few starting exponents
    is kept (power-law fits have shallow valleys).
    """
    if not transfer_ridge >= 0:  # NaN fails too
        raise MosgymError(f"transfer ridge {transfer_ridge}: must be a number >= 0 (or inf)")
    if np.isinf(transfer_ridge):  # the limit: no transfer between skills at all
        fit_transfer = False
    train_sizes = np.asarray(train_sizes, dtype=np.float64)
    n = _check_runs(runs, train_sizes)
    grids = _grids(runs)
    init = np.mean([r.dev_loss[0] for r in runs], axis=0)
    epochs0 = np.full(n, float(overfit_epochs))
    max_epochs = np.max([r.examples[-1] / train_sizes for r in runs], axis=0)
    overfit_mask = (max_epochs > overfit_epochs) & fit_overfit
    layout = _Layout(n, overfit_mask, fit_forget, fit_transfer, fit_general)
    observed = np.concatenate([np.log(dev[:, 1:]).ravel() for _, _, dev in grids])
    n_transfer = n * (n - 1) if fit_transfer else 0
    ridge = np.sqrt(transfer_ridge)

    def residuals(x: np.ndarray) -> np.ndarray:
        fit = layout.unpack(x, init, epochs0)
        pred = [simulate_dev_loss(fit, s, ex, train_sizes)[:, 1:] for s, ex, _ in grids]
        res = np.log(np.maximum(np.concatenate([p.ravel() for p in pred]), 1e-9)) - observed
        if ridge > 0 and n_transfer:  # the transfer block is the tail of x (see _Layout)
            res = np.concatenate([res, ridge * x[len(x) - n_transfer :]])
        return res

    min_dev = np.min([r.dev_loss.min(axis=0) for r in runs], axis=0)
    final = np.median([r.examples[-1] for r in runs], axis=0)
    rate0 = np.maximum(final / 20.0, 1.0)
    best = None
    for a0 in exponent_starts:
        x0, lo, hi = layout.start_and_bounds(
            init, 0.5 * min_dev, rate0, a0, max(float(final.sum()) / 50.0, 2.0)
        )
        sol = least_squares(residuals, np.clip(x0, lo, hi), bounds=(lo, hi), x_scale="jac")
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    result = layout.unpack(best.x, init, epochs0)
    result.cost = float(best.cost)
    return result


def log_residual_mse(fit: FitResult, runs: list[RunCurves], train_sizes: np.ndarray) -> float:
    """Mean squared log(predicted / observed) dev loss over `runs`' points after step 0."""
    res = [
        np.log(np.maximum(simulate_dev_loss(fit, s, ex, train_sizes)[:, 1:], 1e-9) / dev[:, 1:])
        for s, ex, dev in _grids(runs)
    ]
    return float(np.mean(np.concatenate([r.ravel() for r in res]) ** 2))


def choose_transfer_ridge(
    runs: list[RunCurves],
    train_sizes: np.ndarray,
    grid: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0, 10.0, 100.0, float("inf")),
    **fit_kwargs: Any,
) -> tuple[float, dict[float, float]]:
    """The ridge of `grid` with the lowest leave-one-group-out log error: (lambda, scores).

    Each mixture group in turn is left out, the rest fitted, and the left-out curves scored
    (log_residual_mse); a lambda's score is the mean over groups. Ties go to the larger lambda
    (the simpler transfer). Costs len(grid) x groups fits; the held-out runs of the calibration
    are not among `runs`, so they stay unseen.
    """
    groups = sorted({group_of(r) for r in runs})
    if len(groups) < 2:
        raise MosgymError(
            "transfer ridge cv: needs runs of at least 2 mixture groups to leave one out"
        )
    scores: dict[float, float] = {}
    for lam in grid:
        errs = []
        for g in groups:
            train = [r for r in runs if group_of(r) != g]
            left = [r for r in runs if group_of(r) == g]
            fit = fit_sim_params(train, train_sizes, transfer_ridge=lam, **fit_kwargs)
            errs.append(log_residual_mse(fit, left, train_sizes))
        scores[float(lam)] = float(np.mean(errs))
    best = min(scores.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return best, scores


def fit_report(
    fit: FitResult, runs: list[RunCurves], train_sizes: np.ndarray, skill_names: list[str]
) -> dict[str, dict[str, float]]:
    """Per skill R^2 and mean relative error of the predicted dev loss over `runs` (step > 0)."""
    if not runs:
        return {}
    obs, pred = [], []
    for steps, ex, dev in _grids(runs):
        pred.append(simulate_dev_loss(fit, steps, ex, train_sizes)[:, 1:].reshape(-1, dev.shape[2]))
        obs.append(dev[:, 1:].reshape(-1, dev.shape[2]))
    o, p = np.concatenate(obs), np.concatenate(pred)
    ss_res = ((o - p) ** 2).sum(axis=0)
    ss_tot = ((o - o.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)
    rel = np.mean(np.abs(p - o) / o, axis=0)
    return {
        name: {"r2": float(r2[i]), "rel_err": float(rel[i]), "points": int(o.shape[0])}
        for i, name in enumerate(skill_names)
    }


def split_holdout(
    runs: list[RunCurves], holdout: int | None = None, holdout_runs: list[str] | None = None
) -> tuple[list[RunCurves], list[RunCurves]]:
    """(fit runs, held-out runs): explicit run ids, or all runs of the last `holdout` groups.

    Groups (mixture policies) are sorted by name; `holdout` None holds out one group when there
    are at least two, so a default calibration always reports an out-of-sample fit.
    """
    if holdout_runs:
        unknown = sorted(set(holdout_runs) - {r.run_id for r in runs})
        if unknown:
            raise MosgymError(f"--holdout-runs: no such run in the experiment: {unknown}")
        held = [r for r in runs if r.run_id in holdout_runs]
    else:
        groups = sorted({group_of(r) for r in runs})
        k = (1 if len(groups) > 1 else 0) if holdout is None else holdout
        if k < 0 or k >= len(groups):
            raise MosgymError(
                f"--holdout {k}: must be in [0, {len(groups) - 1}] (there are {len(groups)} "
                "mixture groups and at least one must remain for fitting)"
            )
        out = set(groups[len(groups) - k :])
        held = [r for r in runs if group_of(r) in out]
    fit = [r for r in runs if r not in held]
    if not fit:
        raise MosgymError("calibration: every run is held out; keep at least one for fitting")
    return fit, held
