"""Figures for one run: the mixture over time and the per-skill dev-loss curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def mixture_figure(steps: list[int], mixture: np.ndarray, names: list[str], title: str) -> Figure:
    """Stacked area of the mixture used in each interval, every interval to its end.

    steps: (K + 1,) interval boundaries (0, S, ..., T); mixture: (K, N), row k used from
    steps[k] to steps[k + 1].
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    mix = np.asarray(mixture)
    # step="post" holds each value until the next x: repeat the last row at the end, T.
    ax.stackplot(steps, np.vstack([mix, mix[-1:]]).T, labels=names, step="post", alpha=0.9)
    ax.set(xlabel="optimizer step", ylabel="sampling probability", ylim=(0, 1), title=title)
    ax.set_xlim(steps[0], steps[-1])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def dev_loss_figure(steps: list[int], dev: np.ndarray, names: list[str], title: str) -> Figure:
    """Per-skill dev loss against optimizer steps. dev: (n_points, N)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, name in enumerate(names):
        ax.plot(steps, np.asarray(dev)[:, i], label=name, marker=".")
    ax.plot(steps, np.asarray(dev).mean(axis=1), label="mean", color="black", linewidth=2)
    ax.set(xlabel="optimizer step", ylabel="dev loss (response NLL)", title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
