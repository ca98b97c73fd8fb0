"""Figures for `mosgym.compare`: aggregates with intervals, learning curves, mixture paths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import trim_mean  # noqa: E402


class Point(NamedTuple):
    """One agent's aggregate for one metric: IQM and its interval (nan when too few seeds)."""

    agent: str
    iqm: float
    lo: float
    hi: float


def aggregates_figure(panels: Sequence[tuple[str, Sequence[Point]]]) -> Figure:
    """One panel per metric: each agent's IQM as a dot with its 95% interval as a bar."""
    rows = max(len(points) for _, points in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 1.4 + 0.4 * rows))
    axes = np.atleast_1d(axes)
    for ax, (title, points) in zip(axes, panels, strict=True):
        for y, p in enumerate(points):
            if np.isfinite(p.lo) and np.isfinite(p.hi):
                ax.plot([p.lo, p.hi], [y, y], color="tab:blue", linewidth=6, alpha=0.35)
            ax.plot([p.iqm], [y], "o", color="tab:blue")
        ax.set_yticks(range(len(points)), [p.agent for p in points])
        ax.set_ylim(-0.7, len(points) - 0.3)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[1:]:
        ax.tick_params(labelleft=False)
    fig.suptitle("IQM over seeds with 95% stratified bootstrap intervals", fontsize=10)
    fig.tight_layout()
    return fig


def curve_band(
    values: np.ndarray, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step IQM over seeds and a bootstrap band. values (runs, K) -> three (K,) arrays.

    Whole curves are resampled (a seed is the unit that varies), so the band is a pointwise
    percentile interval of the IQM curve; with one run the band collapses onto the line.
    """
    v = np.asarray(values, dtype=np.float64)
    line = trim_mean(v, 0.25, axis=0)
    if v.shape[0] < 2:
        return line, line.copy(), line.copy()
    idx = np.random.default_rng(seed).integers(0, v.shape[0], size=(n_boot, v.shape[0]))
    boots = trim_mean(v[idx], 0.25, axis=1)  # (n_boot, K)
    lo, hi = np.percentile(boots, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return line, lo, hi


def learning_curves_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], target: float, reference: str
) -> Figure:
    """Mean dev loss against optimizer steps: IQM over seeds with a 95% band, per agent.

    curves: agent -> (steps (K,), values (runs, K)). The dashed line is the speed-up target.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent, (steps, values) in curves.items():
        line, lo, hi = curve_band(values)
        (drawn,) = ax.plot(steps, line, label=f"{agent} (n={values.shape[0]})")
        ax.fill_between(steps, lo, hi, color=drawn.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"{reference} final")
    ax.set(xlabel="optimizer step", ylabel="mean dev loss", title="Learning curves")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def mixture_paths_figure(
    paths: dict[str, tuple[np.ndarray, np.ndarray]], skills: Sequence[str]
) -> Figure:
    """One stacked-area panel per agent: the mixture (mean over seeds) against optimizer steps.

    paths: agent -> (steps (M,), weights (M, N)); an agent with no weights logged gets a note.
    """
    n = len(paths)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.2 + 1.8 * n), sharex=True, squeeze=False)
    for ax, (agent, (steps, weights)) in zip(axes[:, 0], paths.items(), strict=True):
        if len(steps) == 0:
            ax.text(0.5, 0.5, "no weight/* metrics logged", ha="center", transform=ax.transAxes)
        else:
            # The weight logged at step s was used in the interval that ended at s.
            ax.stackplot(steps, np.asarray(weights).T, labels=list(skills), step="pre")
            ax.set_xlim(steps[0], steps[-1])
        ax.set(ylim=(0, 1), ylabel="probability", title=agent)
    if any(len(steps) for steps, _ in paths.values()):
        handles, labels = next(
            ax.get_legend_handles_labels() for ax in axes[:, 0] if ax.get_legend_handles_labels()[0]
        )
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.suptitle("Mixture path per agent (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str) -> None:
    """Write a PNG and free the figure (many figures in one process otherwise pile up)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
