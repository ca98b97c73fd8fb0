"""Compare agents across seeds with honest statistics: `python -m mosgym.compare`.

Reads the finished runs of an MLflow experiment (tag mosgym.kind=run) and reports, per agent:
final mean and worst-skill dev loss, mean accuracy, the area under the mean-dev-loss curve
(normalised by the step span: the curve's average level), and the speed-up to a reference
agent's final mean dev loss (the paper's "2.2x faster"). Each is the IQM over seeds with a 95%
stratified bootstrap interval, plus the probability that a run of the agent beats a run of the
reference (Agarwal et al. 2021). Outputs: a markdown table on stdout, comparison.md,
comparison.csv, three PNGs and (with plotly installed, `pip install "mosgym[dashboard]"`) an
interactive dashboard.html in --out, all also logged as an MLflow run (mosgym.kind=comparison)
whose metrics are the headline numbers and whose description is the report.

Tasks of the stratified bootstrap: every metric is its own single task, a (seeds, 1) matrix.
Per-skill results are reported per skill, each also one task, and never pooled into one
(seeds, skills) matrix: skills' losses live on different scales (their intrinsic entropy), so
an IQM across skills would weigh skills by that scale rather than agents by their quality.

Speed-up: the target is the last point of the reference's mean-over-seeds dev_loss_mean curve
(its final mean dev loss on the same dev sample the curves use); the reference's mean curve
reaches it at step t_ref. A run's speed-up is t_ref / (the first step its own curve reaches the
target, linearly interpolated); a run that never reaches it scores 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mosgym.analysis import dashboard
from mosgym.analysis import plots as compare_plots
from mosgym.analysis.report import (
    HEADLINE,
    Metric,
    Row,
    Target,
    csv_report,
    markdown_report,
    per_skill_metrics,
)
from mosgym.analysis.stats import (
    Interval,
    area_under_curve,
    iqm,
    probability_of_improvement,
    probability_of_improvement_ci,
    speedup,
    steps_to_target,
    stratified_bootstrap_ci,
)
from mosgym.errors import MosgymError
from mosgym.records.archive_reader import ArchiveReader
from mosgym.records.runs import (
    Loaded,
    RunData,
    agent_curve,
    load_runs,
    make_client,
    mixture_paths,
    skill_curves,
)
from mosgym.records.store import check_writable

NAN_INTERVAL = Interval(math.nan, math.nan)
CSV_NAME, MD_NAME = "comparison.csv", "comparison.md"
PLOT_NAMES = ("aggregates.png", "learning_curves.png", "mixture_paths.png")


def choose_reference(agents: list[str], requested: str | None) -> str:
    """--reference, else an agent whose name has 'temp' (static TEMP), else the first by name."""
    if requested is not None:
        if requested not in agents:
            raise MosgymError(
                f"--reference {requested}: no finished runs of that agent "
                f"(agents: {', '.join(agents)})"
            )
        return requested
    temp = sorted(a for a in agents if "temp" in a.lower())
    return temp[0] if temp else sorted(agents)[0]


def find_target(runs: list[RunData], reference: str) -> Target:
    """Where the reference's mean-over-seeds curve ends, and when it first got there."""
    grid, values = agent_curve(runs, reference)
    mean = values.mean(axis=0)
    return Target(reference, float(mean[-1]), steps_to_target(grid, mean, float(mean[-1])))


def mean_curve_speedups(
    runs: list[RunData], agents: list[str], target: Target
) -> dict[str, tuple[float, float]]:
    """agent -> (step its mean-over-seeds curve first reaches the target, speed-up ratio).

    The paper's Figure 3 statement is about mean curves; unlike the per-run speed-up (where a
    reference seed ending above the reference's mean never reaches the target and scores 0),
    the reference here scores exactly 1.
    """
    out = {}
    for a in agents:
        grid, values = agent_curve(runs, a)
        reached = steps_to_target(grid, values.mean(axis=0), target.loss)
        out[a] = (reached, speedup(target.ref_steps, reached))
    return out


def score_run(r: RunData, m: Metric, target: Target) -> float:
    """One run's score on `m`; NaN when the run did not log it."""
    if m.source is not None:
        return r.finals.get(m.source, math.nan)
    if m.key == "auc_dev_loss_mean":
        return area_under_curve(r.steps, r.dev_loss_mean)
    if m.key == "speedup":
        reached = steps_to_target(r.steps, r.dev_loss_mean, target.loss)
        return speedup(target.ref_steps, reached)
    raise ValueError(f"no scorer for metric {m.key}")


def per_run_scores(
    runs: list[RunData], metrics: list[Metric], target: Target
) -> dict[str, dict[str, np.ndarray]]:
    """metric key -> agent -> (seeds,) scores, NaN (not logged) dropped; empty metrics omitted."""
    agents = sorted({r.agent for r in runs})
    out: dict[str, dict[str, np.ndarray]] = {}
    for m in metrics:
        by_agent = {}
        for a in agents:
            vals = np.array([score_run(r, m, target) for r in runs if r.agent == a])
            by_agent[a] = vals[~np.isnan(vals)]
        if any(len(v) for v in by_agent.values()):
            out[m.key] = by_agent
    return out


def summarize(
    scores: dict[str, dict[str, np.ndarray]],
    metrics: list[Metric],
    reference: str,
    n_boot: int = 2000,
) -> list[Row]:
    """A Row per agent x metric; P(improvement) is NaN for the reference itself."""
    rows: list[Row] = []
    for m in metrics:
        if m.key not in scores:
            continue
        ref = scores[m.key][reference]
        for agent, vals in scores[m.key].items():
            if len(vals) == 0:
                rows.append(Row(agent, m, 0, math.nan, NAN_INTERVAL, math.nan, NAN_INTERVAL))
                continue
            point, ci = iqm(vals), stratified_bootstrap_ci(vals, n_boot=n_boot)
            poi, poi_ci = math.nan, NAN_INTERVAL
            if agent != reference and len(ref):
                poi = probability_of_improvement(vals, ref, m.higher_is_better)
                poi_ci = probability_of_improvement_ci(vals, ref, m.higher_is_better, n_boot)
            rows.append(Row(agent, m, len(vals), point, ci, poi, poi_ci))
    return rows


# ---------------------------------------------------------------------------------------------
# Plots, output folder, MLflow


def write_plots(folder: Path, rows: list[Row], runs: list[RunData], target: Target) -> None:
    """aggregates.png, learning_curves.png and mixture_paths.png in `folder`."""
    agents = sorted({r.agent for r in runs})
    colors = compare_plots.agent_colors(agents)
    panels = []
    for m in HEADLINE:
        pts = [compare_plots.Point(r.agent, r.iqm, r.ci.lo, r.ci.hi) for r in rows if r.metric == m]
        if pts:
            panels.append((f"{m.label} {m.arrow}", pts))
    fig = compare_plots.aggregates_figure(panels, colors)
    compare_plots.save(fig, str(folder / PLOT_NAMES[0]))
    curves = {a: agent_curve(runs, a) for a in agents}
    fig = compare_plots.learning_curves_figure(curves, target.loss, target.reference, colors)
    compare_plots.save(fig, str(folder / PLOT_NAMES[1]))
    paths = mixture_paths(runs, agents)
    fig = compare_plots.mixture_paths_figure(paths, runs[0].skills, runs[0].budget)
    compare_plots.save(fig, str(folder / PLOT_NAMES[2]))


def write_atomically(out: Path, fill: Callable[[Path], None]) -> None:
    """Build the folder in a temporary sibling, then swap it in: never a half-written `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.parent / f".{tmp.name}.old"
    try:
        fill(tmp)
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old.exists():  # put the previous folder back rather than lose it
                old.rename(out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def headline_metrics(rows: list[Row]) -> dict[str, float]:
    """The comparison's headline numbers as MLflow metrics: for every headline metric and agent,
    ``{metric}/{agent}/iqm``, ``.../ci_low``, ``.../ci_high`` and (not for the reference)
    ``.../p_improvement``; NaNs are left out."""
    out: dict[str, float] = {}
    for r in rows:
        if r.metric not in HEADLINE:
            continue
        agent = re.sub(r"[^\w./ -]+", "_", r.agent)  # MLflow's allowed metric-name characters
        stats = {"iqm": r.iqm, "ci_low": r.ci.lo, "ci_high": r.ci.hi, "p_improvement": r.poi}
        for stat, value in stats.items():
            if math.isfinite(value):
                out[f"{r.metric.key}/{agent}/{stat}"] = float(value)
    return out


def log_comparison(
    client: Any, loaded: Loaded, folder: Path, reference: str, n_boot: int, rows: list[Row],
    markdown: str,
) -> str:  # fmt: skip
    """A FINISHED MLflow run (mosgym.kind=comparison) in the runs' experiment: the headline
    numbers as metrics, the report as its description, the files attached.

    Uses the client, not the fluent API, so a caller's active run is neither ended nor nested.
    """
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.entities import Param

    from mosgym.experiment.browse import set_note

    runs = loaded.runs
    exp_id = client.get_run(runs[0].run_id).info.experiment_id
    agents = sorted({r.agent for r in runs})
    tags = {"mosgym.kind": "comparison", "mosgym.reference": reference}
    run = client.create_run(exp_id, tags=tags, run_name=f"compare {' vs '.join(agents)}"[:250])
    rid = run.info.run_id
    try:
        params = {
            "reference": reference, "agents": ",".join(agents), "n_runs": len(runs),
            "budget": runs[0].budget, "skills": ",".join(runs[0].skills), "n_boot": n_boot,
            "run_ids": ",".join(r.run_id for r in runs)[:500],
        }  # fmt: skip
        ts = int(time.time() * 1000)
        metrics = [MlflowMetric(k, v, ts, 0) for k, v in headline_metrics(rows).items()]
        client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(rid, metrics=metrics[i : i + 1000])
        set_note(rid, markdown, client)
        client.log_artifacts(rid, str(folder))
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    client.set_terminated(rid, "FINISHED")
    return str(rid)


@dataclass
class Comparison:
    """What one compare call produced: the rows, the markdown, the folder, the MLflow run."""

    rows: list[Row]
    markdown: str
    out: Path
    run_id: str


def compare(
    client: Any,
    experiment: str,
    run_ids: list[str] | None = None,
    agents: list[str] | None = None,
    reference: str | None = None,
    out: Path | None = None,
    n_boot: int = 2000,
    env: str | None = None,
) -> Comparison:
    """Read, aggregate, write the folder atomically, and log the comparison run."""
    check_writable(str(client.tracking_uri))  # the comparison run is written to it
    loaded = load_runs(client, experiment, run_ids, agents, env)
    runs = loaded.runs
    ref = choose_reference(sorted({r.agent for r in runs}), reference)
    target = find_target(runs, ref)
    metrics = [*HEADLINE, *per_skill_metrics(runs[0].skills)]
    rows = summarize(per_run_scores(runs, metrics, target), metrics, ref, n_boot)
    present = {r.agent for r in runs}
    order = [a for a in agents if a in present] if agents else sorted(present)
    mean_speedups = mean_curve_speedups(runs, order, target)
    md = markdown_report(
        experiment, rows, target, runs[0].skills, loaded.notes, order, mean_speedups
    )

    def fill(folder: Path) -> None:
        (folder / MD_NAME).write_text(md, encoding="utf-8")
        (folder / CSV_NAME).write_text(csv_report(rows, ref), encoding="utf-8")
        write_plots(folder, rows, runs, target)
        if dashboard.available():  # an optional extra: mosgym[dashboard]
            per_run = {r.run_id: skill_curves(client, r) for r in runs}
            page = dashboard.render(experiment, rows, order, target, runs, per_run)
            (folder / dashboard.NAME).write_text(page, encoding="utf-8")

    out = out or Path("compare") / (re.sub(r"[^\w.-]+", "_", experiment).lstrip(".") or "_")
    write_atomically(out, fill)
    if isinstance(client, ArchiveReader):  # read-only: an archive's comparison is its folder
        return Comparison(rows, md, out, "")
    return Comparison(rows, md, out, log_comparison(client, loaded, out, ref, n_boot, rows, md))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mosgym.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  mosgym compare --experiment skills-tiny\n"
        "  mosgym compare --experiment skills-tiny --agents static-prop mos-cossim-ema\n"
        "  mosgym compare --experiment sweep --env sim-skills-tiny --reference static-uni",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment holding the runs")
    p.add_argument("--runs", nargs="+", default=None, metavar="ID", help="only these run ids")
    p.add_argument("--agents", nargs="+", default=None, metavar="A", help="only these agents")
    p.add_argument("--env", default=None, help="only runs of this env config (tag mosgym.env)")
    p.add_argument("--reference", default=None, help="reference agent (default: *temp*)")
    p.add_argument("--out", type=Path, default=None, help="folder (default ./compare/EXP)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLflow's)")
    p.add_argument("--archive", default=None, help="read a run archive, not MLflow (no run logged)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap samples (default 2000)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.n_boot < 100:
            raise MosgymError(f"--n-boot {args.n_boot}: use at least 100 bootstrap samples")
        client = make_client(args.tracking_uri, args.archive)
        result = compare(
            client, args.experiment, args.runs, args.agents, args.reference, args.out,
            args.n_boot, args.env,
        )  # fmt: skip
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    print(result.markdown, end="")
    if not result.run_id:
        print(f"wrote {result.out}/ ; read from an archive", file=sys.stderr)
        return 0
    print(f"wrote {result.out}/ ; MLflow comparison run {result.run_id}", file=sys.stderr)
    from mosgym.experiment.browse import browse_lines, run_page_url

    uri = str(client.tracking_uri)
    exp_id = client.get_run(result.run_id).info.experiment_id
    shown = dashboard.NAME if (result.out / dashboard.NAME).is_file() else None
    lines = browse_lines(uri, exp_id)
    lines[-1] = lines[-1].replace(
        lines[-1].split()[-1], run_page_url(uri, exp_id, result.run_id, shown)
    )
    print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
