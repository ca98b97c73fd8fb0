"""The leaderboard's figures: learning curves, performance profiles, simulator vs real."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mosgym.analysis.plots import curve_band, save  # noqa: E402
from mosgym.analysis.stats import iqm, performance_profile  # noqa: E402
from mosgym.benchmark.leaderboard import Row, Scores  # noqa: E402
from mosgym.records.runs import stack_curves  # noqa: E402


def learning_curves_figure(s: Scores) -> Figure:
    """Simulator score against training env steps: IQM over seeds with a 95% band per trained
    algorithm; agents that do not train (in-episode learners, baselines) as dashed levels."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, curves in s.curves.items():
        steps, values = stack_curves([(st, v) for _, st, v in curves])
        line, lo, hi = curve_band(values)
        (drawn,) = ax.plot(steps, line, label=f"{name} (n={values.shape[0]})")
        ax.fill_between(steps, lo, hi, color=drawn.get_color(), alpha=0.2, linewidth=0)
    for name, kind in s.kinds.items():
        if kind != "trained" and s.sim.get(name):
            ax.axhline(
                iqm(np.array(s.sim[name])),
                linestyle="--",
                linewidth=1,
                label=name,
                color=f"C{len(ax.lines) % 10}",
            )
    ax.set(
        xlabel="simulated env steps of training",
        ylabel="final mean dev loss (held-out sim episodes)",
        title="Learning curves",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def performance_profiles_figure(s: Scores) -> Figure:
    """Fraction of each agent's real runs ending below every loss level tau."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    have = {n: np.array(v) for n, v in s.real.items() if v}
    if have:
        allv = np.concatenate(list(have.values()))
        taus = np.linspace(allv.min() * 0.98, allv.max() * 1.02, 200)
        for name, vals in have.items():
            ls = "-" if s.kinds.get(name) == "trained" else "--"
            ax.plot(
                taus,
                performance_profile(vals, taus, higher_is_better=False),
                ls,
                label=f"{name} (n={len(vals)})",
            )
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    else:
        ax.text(0.5, 0.5, "no real runs yet", ha="center", transform=ax.transAxes)
    ax.set(
        xlabel="final mean dev loss tau (real env)",
        ylabel="fraction of runs below tau",
        ylim=(-0.02, 1.02),
        title="Performance profiles (real runs)",
    )
    fig.tight_layout()
    return fig


def sim_vs_real_figure(table: list[Row]) -> Figure:
    """Each agent's simulator IQM against its real IQM; on the diagonal the simulator is exact."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    pts = [r for r in table if np.isfinite(r.sim_iqm) and np.isfinite(r.real_iqm)]
    for r in pts:
        ax.plot(r.sim_iqm, r.real_iqm, "o" if r.kind == "trained" else "s")
        ax.annotate(
            r.name, (r.sim_iqm, r.real_iqm), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    if pts:
        lo = min(min(r.sim_iqm, r.real_iqm) for r in pts) * 0.95
        hi = max(max(r.sim_iqm, r.real_iqm) for r in pts) * 1.05
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    else:
        ax.text(0.5, 0.5, "no agent has both scores yet", ha="center", transform=ax.transAxes)
    ax.set(xlabel="simulator IQM", ylabel="real IQM", title="Final mean dev loss: sim vs real")
    fig.tight_layout()
    return fig


FIGURES = ("learning_curves.png", "performance_profiles.png", "sim_vs_real.png")


def write_figures(folder: str, s: Scores, table: list[Row]) -> None:
    figs = (learning_curves_figure(s), performance_profiles_figure(s), sim_vs_real_figure(table))
    for name, fig in zip(FIGURES, figs, strict=True):
        save(fig, f"{folder}/{name}")
