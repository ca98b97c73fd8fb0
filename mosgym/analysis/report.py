"""The comparison's rows and how they read: metrics, targets, and the markdown and CSV reports.

Split from compare.py (which computes the rows) so that anything holding rows (a comparison, the
benchmark's leaderboard) renders them the same way.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from mosgym.analysis.stats import TOO_FEW_RUNS_NOTE, Interval


@dataclass(frozen=True)
class Metric:
    """A per-run score: `key` names it in the CSV, `label` in the table and plots.

    `source`: the MLflow final metric it is read from; None for scores computed from curves.
    """

    key: str
    label: str
    higher_is_better: bool
    source: str | None = None

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


@dataclass(frozen=True)
class Target:
    """The speed-up target: the reference's final mean dev loss and the step its curve hits it."""

    reference: str
    loss: float
    ref_steps: float


@dataclass(frozen=True)
class Row:
    """One agent x metric: IQM over its seeds, the interval, P(improvement over the reference)."""

    agent: str
    metric: Metric
    n: int
    iqm: float
    ci: Interval
    poi: float
    poi_ci: Interval


HEADLINE = (
    Metric("final_dev_loss_mean", "final mean dev loss", False, "final/dev_loss_mean"),
    Metric("final_dev_loss_worst", "final worst-skill dev loss", False, "final/dev_loss_worst"),
    Metric("final_accuracy_mean", "mean accuracy", True, "final/accuracy_mean"),
    Metric("auc_dev_loss_mean", "area under mean dev loss", False),
    Metric("speedup", "speed-up to reference's final loss", True),
)


def per_skill_metrics(skills: tuple[str, ...]) -> list[Metric]:
    """Final dev loss and accuracy of each skill, each compared on its own."""
    kinds = (("dev_loss", "dev loss", False), ("accuracy", "accuracy", True))
    return [
        Metric(f"final_{k}/{s}", f"{t} {s}", up, f"final/{k}/{s}")
        for k, t, up in kinds
        for s in skills
    ]


def _num(x: float) -> str:
    # '#' keeps significant zeros (0.6280); strip the bare point it leaves on integers ("1000.").
    return "-" if math.isnan(x) else f"{x:#.4g}".rstrip(".")


def _cell(point: float, ci: Interval) -> str:
    if math.isnan(point):
        return "-"
    if math.isnan(ci.lo):
        return f"{_num(point)}*" if ci.too_few_runs else _num(point)
    return f"{_num(point)} [{_num(ci.lo)}, {_num(ci.hi)}]"


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(cells) + " |" for cells in lines]


def _agent_table(
    rows: list[Row], metrics: list[Metric], agents: list[str], value: Callable[[Row], str]
) -> list[str]:
    shown = [m for m in metrics if any(r.metric == m for r in rows)]
    cell = {(r.agent, r.metric.key): value(r) for r in rows}
    lines = []
    for a in agents:
        n = max((r.n for r in rows if r.agent == a), default=0)
        note = TOO_FEW_RUNS_NOTE if n < 2 else ""
        lines.append([a, str(n), *(cell.get((a, m.key), "-") for m in shown), note])
    return _table(["agent", "seeds", *(f"{m.label} {m.arrow}" for m in shown), "notes"], lines)


def markdown_report(
    experiment: str,
    rows: list[Row],
    target: Target,
    skills: tuple[str, ...],
    notes: list[str],
    agents: list[str] | None = None,
    mean_speedups: dict[str, tuple[float, float]] | None = None,
) -> str:
    """The comparison as markdown: aggregates, P(improvement), mean-curve speed-ups, per-skill
    results, notes. Agents in the given order (default: sorted)."""
    agents = agents or sorted({r.agent for r in rows})
    ref = target.reference
    parts = [
        f"## mosgym comparison: experiment `{experiment}`",
        "",
        f"IQM over seeds [95% stratified bootstrap interval]; ↓ lower is better, ↑ higher. "
        f"Reference agent: `{ref}`. Speed-up target: {ref}'s final mean dev loss "
        f"{_num(target.loss)}, which its mean curve reaches at step {_num(target.ref_steps)}. "
        f"`*`: {TOO_FEW_RUNS_NOTE}.",
        "",
        *_agent_table(rows, list(HEADLINE), agents, lambda r: _cell(r.iqm, r.ci)),
        "",
        f"### Probability of improvement over `{ref}` [95% interval]",
        "",
        *_agent_table(rows, list(HEADLINE), agents, lambda r: _cell(r.poi, r.poi_ci)),
        *_speedup_table(agents, mean_speedups or {}, ref),
        "",
        "### Per skill (final)",
        "",
        *_agent_table(rows, per_skill_metrics(skills), agents, lambda r: _cell(r.iqm, r.ci)),
    ]
    if notes:
        parts += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(parts) + "\n"


def _speedup_table(
    agents: list[str], speedups: dict[str, tuple[float, float]], ref: str
) -> list[str]:
    if not speedups:
        return []
    lines = [[a, _num(speedups[a][0]), _num(speedups[a][1])] for a in agents if a in speedups]
    return [
        "",
        f"### Speed-up of the mean curves (the paper's Figure 3): steps to `{ref}`'s final loss",
        "",
        *_table(["agent", "steps to target", "speed-up ↑"], lines),
    ]


CSV_COLUMNS = (
    "agent", "metric", "higher_is_better", "n_seeds", "iqm", "ci_low", "ci_high",
    "poi_vs_reference", "poi_ci_low", "poi_ci_high", "reference", "note",
)  # fmt: skip


def csv_report(rows: list[Row], reference: str) -> str:
    """One line per agent x metric, full precision; empty cells where there is no number."""

    def f(x: float) -> str:
        return "" if math.isnan(x) else repr(float(x))

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        note = TOO_FEW_RUNS_NOTE if r.n < 2 else ""
        w.writerow([
            r.agent, r.metric.key, int(r.metric.higher_is_better), r.n, f(r.iqm), f(r.ci.lo),
            f(r.ci.hi), f(r.poi), f(r.poi_ci.lo), f(r.poi_ci.hi), reference, note,
        ])  # fmt: skip
    return buf.getvalue()
