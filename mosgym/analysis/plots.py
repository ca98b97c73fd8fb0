"""Figures for `mosgym.compare`: aggregates with intervals, learning curves, mixture paths.

Every figure gives an agent the same colour (`agent_colors`, shared with the HTML dashboard)
and is sized to stay readable in MLflow's artifact preview (roughly 4:3, at most ~1300 px
wide, 10-point text or larger).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import trim_mean  # noqa: E402

PALETTE = [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab10").colors]
FONT = 10


def agent_colors(agents: Sequence[str]) -> dict[str, str]:
    """agent -> hex colour, by the agents' sorted order: the same agent set gives the same
    colours in every figure and in the dashboard (tab10, then tab20's light shades)."""
    extra = [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors[1::2]]
    colours = PALETTE + extra
    return {a: colours[i % len(colours)] for i, a in enumerate(sorted(agents))}


class Point(NamedTuple):
    """One agent's aggregate for one metric: IQM and its interval (nan when too few seeds)."""

    agent: str
    iqm: float
    lo: float
    hi: float


def aggregates_figure(
    panels: Sequence[tuple[str, Sequence[Point]]], colors: dict[str, str] | None = None
) -> Figure:
    """One panel per metric, in a grid of up to 3 columns: each agent's IQM as a dot with its
    95% interval as a bar, in the agent's colour."""
    rows = max(len(points) for _, points in panels)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.8 * ncols, nrows * (1.2 + 0.38 * rows) + 0.5), squeeze=False
    )
    colors = colors or agent_colors([p.agent for _, pts in panels for p in pts])
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        title, points = panels[i]
        for y, p in enumerate(points):
            c = colors.get(p.agent, "tab:blue")
            if np.isfinite(p.lo) and np.isfinite(p.hi):
                ax.plot([p.lo, p.hi], [y, y], color=c, linewidth=7, alpha=0.35)
            ax.plot([p.iqm], [y], "o", color=c, markersize=7)
        ax.set_yticks(range(len(points)), [p.agent for p in points], fontsize=FONT)
        ax.set_ylim(-0.7, len(points) - 0.3)
        ax.invert_yaxis()  # first agent on top, as in the table
        ax.set_title(title, fontsize=FONT + 1)
        ax.tick_params(axis="x", labelsize=FONT - 1)
        ax.grid(axis="x", alpha=0.3)
        if i % ncols:
            ax.tick_params(labelleft=False)
    fig.suptitle("IQM over seeds with 95% stratified bootstrap intervals", fontsize=FONT + 2)
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
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    target: float,
    reference: str,
    colors: dict[str, str] | None = None,
) -> Figure:
    """Mean dev loss against optimizer steps: IQM over seeds with a 95% band, per agent.

    curves: agent -> (steps (K,), values (runs, K)). The dashed line is the speed-up target.
    """
    colors = colors or agent_colors(list(curves))
    fig, ax = plt.subplots(figsize=(8, 5))
    for agent, (steps, values) in curves.items():
        line, lo, hi = curve_band(values)
        c = colors.get(agent)
        ax.plot(steps, line, color=c, linewidth=2, label=f"{agent} (n={values.shape[0]})")
        ax.fill_between(steps, lo, hi, color=c, alpha=0.2, linewidth=0)
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"{reference} final")
    ax.set_xlabel("optimizer step", fontsize=FONT + 1)
    ax.set_ylabel("mean dev loss", fontsize=FONT + 1)
    ax.set_title("Learning curves (IQM over seeds, 95% band)", fontsize=FONT + 2)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT, frameon=False)
    fig.tight_layout()
    return fig


def mixture_paths_figure(
    paths: dict[str, tuple[np.ndarray, np.ndarray]], skills: Sequence[str], end: float
) -> Figure:
    """One stacked-area panel per agent (2 columns): the mixture (mean over seeds) against
    optimizer steps, each interval drawn to its end; `end` is where the last one ends (T).

    paths: agent -> (steps (M,), weights (M, N)), each weight at the start of its interval;
    an agent with no weights logged gets a note.
    """
    n = len(paths)
    ncols = 2 if n > 1 else 1
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 0.8 + 2.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (agent, (steps, weights)) in zip(axes.flat, paths.items(), strict=False):
        if len(steps) == 0:
            ax.text(0.5, 0.5, "no weight/* metrics logged", ha="center", transform=ax.transAxes)
        else:
            w = np.asarray(weights)
            x = np.append(steps, max(end, steps[-1]))
            ax.stackplot(x, np.vstack([w, w[-1:]]).T, labels=list(skills), step="post")
            ax.set_xlim(x[0], x[-1])
        ax.set_ylim(0, 1)
        ax.set_title(agent, fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT - 1)
    if any(len(steps) for steps, _ in paths.values()):
        handles, labels = next(
            ax.get_legend_handles_labels() for ax in axes.flat if ax.get_legend_handles_labels()[0]
        )
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=FONT,
                   frameon=False)  # fmt: skip
    fig.supxlabel("optimizer step", fontsize=FONT)
    fig.supylabel("sampling probability", fontsize=FONT)
    fig.suptitle("Mixture path per agent (mean over seeds)", fontsize=FONT + 2)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str) -> None:
    """Write a PNG and free the figure (many figures in one process otherwise pile up)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
