"""The comparison as one interactive HTML page (plotly), which MLflow shows inline.

`dashboard.html` in the comparison's folder and artifacts: the leaderboard (a plain HTML table,
readable without JavaScript), then plotly figures: the mean dev-loss curves and one panel per
skill, a line per agent (IQM over seeds) in the agent's colour from the PNGs. Clicking an agent
in the legend hides it in every panel. plotly is an optional extra (``pip install
"mosgym[dashboard]"``); without it the comparison simply has no dashboard.
"""

from __future__ import annotations

import html
import importlib.util
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mosgym.analysis.plots import agent_colors, curve_band
from mosgym.analysis.report import HEADLINE, Row, Target
from mosgym.records.runs import RunData, stack_curves

NAME = "dashboard.html"


def available() -> bool:
    """Whether plotly is installed (the dashboard's only extra dependency)."""
    return importlib.util.find_spec("plotly") is not None


def _num(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:#.4g}".rstrip(".")


def leaderboard_html(rows: list[Row], order: Sequence[str], reference: str) -> str:
    """Headline metrics per agent: IQM [95% interval], and P(better than the reference)."""
    metrics = [m for m in HEADLINE if any(r.metric == m for r in rows)]
    by = {(r.agent, r.metric.key): r for r in rows}
    head = "".join(f"<th>{html.escape(m.label)} {m.arrow}</th>" for m in metrics)
    lines = [
        '<table class="leaderboard"><thead><tr><th>agent</th><th>seeds</th>'
        f"{head}<th>P(better than reference) ↑</th></tr>"
        "</thead><tbody>"
    ]
    for agent in order:
        cells = []
        for m in metrics:
            r = by.get((agent, m.key))
            if r is None:
                cells.append("<td>-</td>")
                continue
            ci = f" [{_num(r.ci.lo)}, {_num(r.ci.hi)}]" if math.isfinite(r.ci.lo) else ""
            cells.append(f"<td>{_num(r.iqm)}<small>{ci}</small></td>")
        first = by.get((agent, HEADLINE[0].key))
        n = first.n if first else 0
        poi = "reference" if agent == reference else _num(first.poi if first else math.nan)
        lines.append(
            f"<tr><td><b>{html.escape(agent)}</b></td><td>{n}</td>{''.join(cells)}"
            f"<td>{poi}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def curves_figure(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    panels: Sequence[str],
    colors: dict[str, str],
) -> Any:
    """plotly figure, one panel per name in `panels` (the mean, then each skill), a line per
    agent with a 95% band. curves: agent -> panel -> (steps (K,), values (runs, K))."""
    from plotly.subplots import make_subplots

    cols = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(panels), shared_xaxes=True)
    for agent, by_panel in curves.items():
        for i, panel in enumerate(panels):
            if panel not in by_panel:
                continue
            steps, values = by_panel[panel]
            line, lo, hi = curve_band(values)
            where = {"row": i // cols + 1, "col": i % cols + 1}
            common = {"legendgroup": agent, "line": {"color": colors[agent]}}
            fig.add_scatter(
                x=np.concatenate([steps, steps[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                fill="toself", opacity=0.2, hoverinfo="skip", showlegend=False, mode="none",
                fillcolor=colors[agent], legendgroup=agent, **where,
            )  # fmt: skip
            fig.add_scatter(
                x=steps, y=line, name=agent, showlegend=i == 0, mode="lines",
                hovertemplate=f"{agent}<br>step %{{x}}<br>%{{y:.4f}}<extra></extra>",
                **common, **where,
            )  # fmt: skip
    fig.update_layout(
        height=320 * rows, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.08},
        template="plotly_white",
    )  # fmt: skip
    return fig


def skill_curves(
    runs: list[RunData], per_run: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """agent -> panel -> (grid, (runs, K)): 'mean dev loss' and each skill's dev loss.

    per_run: run id -> (steps (K,), dev losses (K, N) in the run's skill order).
    """
    skills = runs[0].skills
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for agent in sorted({r.agent for r in runs}):
        mine = [r for r in runs if r.agent == agent]
        panels = {"mean dev loss": stack_curves([(r.steps, r.dev_loss_mean) for r in mine])}
        for s in skills:
            got = [
                (per_run[r.run_id][0], per_run[r.run_id][1][:, r.skills.index(s)])
                for r in mine
                if r.run_id in per_run and len(per_run[r.run_id][0])
            ]
            if got:
                panels[f"dev loss {s}"] = stack_curves(got)
        out[agent] = panels
    return out


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; }}
table.leaderboard {{ border-collapse: collapse; margin: 8px 0 20px; font-size: 14px; }}
.leaderboard th, .leaderboard td {{ border-bottom: 1px solid #ddd; padding: 4px 10px;
  text-align: right; }}
.leaderboard th:first-child, .leaderboard td:first-child {{ text-align: left; }}
.leaderboard small {{ color: #666; }}
</style></head><body>
<h2>{title}</h2>
<p>IQM over seeds with 95% stratified bootstrap intervals; reference agent
<b>{reference}</b> (P(better): the chance that a run of the agent ends with a lower mean dev
loss than a run of the reference); budget {budget} optimizer steps.</p>
{leaderboard}
{figure}
</body></html>
"""


def render(
    experiment: str,
    rows: list[Row],
    order: Sequence[str],
    target: Target,
    runs: list[RunData],
    per_run: dict[str, tuple[np.ndarray, np.ndarray]],
) -> str:
    """The whole page (plotly.js inlined: MLflow shows artifacts offline, in a sandbox)."""
    import plotly.io as pio

    curves = skill_curves(runs, per_run)
    panels = ["mean dev loss", *(f"dev loss {s}" for s in runs[0].skills)]
    panels = [p for p in panels if any(p in c for c in curves.values())]
    fig = curves_figure(curves, panels, agent_colors(list(curves)))
    return PAGE.format(
        title=html.escape(f"mosgym comparison: {experiment}"),
        reference=html.escape(target.reference),
        budget=runs[0].budget,
        leaderboard=leaderboard_html(rows, order, target.reference),
        figure=pio.to_html(fig, include_plotlyjs=True, full_html=False),
    )
