"""The report stage: the leaderboard, read back from MLflow alone.

Scores: the final mean dev loss over skills (lower is better). Real: `final/dev_loss_mean` of
every FINISHED deployment of this benchmark (one run per policy x real seed); simulator:
`sim/final_dev_loss_mean` of every FINISHED child of the benchmark's parent (one per training
seed; one for an in-episode learner or a baseline). Per agent: the IQM with a 95% stratified
bootstrap interval (mosgym.analysis.stats), the probability that one of its real runs beats one
of the best static heuristic's (the static baseline with the lowest real IQM) and one of MoS
with the PROP prior's, the simulator IQM beside the real one and the sim-to-real gap (real IQM
minus simulator IQM: how much worse the real env treats the agent than the simulator
predicted). The issue's target: a policy trained only in the simulator with both
probabilities >= 0.75.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mosgym.analysis.stats import (
    TOO_FEW_RUNS_NOTE,
    Interval,
    iqm,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)
from mosgym.benchmark import tracking as bt
from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.simeval import EVAL_SEED
from mosgym.benchmark.suite import STATIC
from mosgym.records.runs import search_all

MOS_PROP = "mos-prior-tau1"
TARGET_POI = 0.75
NAN = Interval(math.nan, math.nan)


@dataclass
class Scores:
    """Per agent (algorithm or baseline) what MLflow holds for this benchmark."""

    kinds: dict[str, str] = field(default_factory=dict)
    """'trained' (SB3, a policy per seed), 'in-episode' (MoS, ODM) or 'baseline'."""
    sim: dict[str, list[float]] = field(default_factory=dict)
    real: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = field(default_factory=dict)
    """Trained algorithms: per seed (seed, env steps (K,), simulator final mean dev loss (K,))."""
    train_seconds: dict[str, list[float]] = field(default_factory=dict)
    real_seconds: dict[str, list[float]] = field(default_factory=dict)
    """Wall time of each real run (MLflow wall_time_s)."""
    notes: list[str] = field(default_factory=list)


def _history(client: Any, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    by_step = {
        m.step: m.value
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    }
    steps = np.array(sorted(by_step), dtype=np.float64)
    return steps, np.array([by_step[s] for s in sorted(by_step)], dtype=np.float64)


def load_scores(client: Any, settings: Settings) -> Scores:
    """Everything the leaderboard needs, from the parent's children and the real runs."""
    parent = bt.require_parent(client, settings.experiment, settings.bench_id)
    s = Scores()
    for algo, entry in settings.entries.items():
        s.kinds[algo] = "trained" if entry.trains else "in-episode"
    for name in settings.baselines:
        s.kinds[name] = "baseline"
    for run in bt.finished_trials(client, parent).values():
        name = run.data.tags.get(bt.ALGO)
        if name not in s.kinds:
            continue
        score = run.data.metrics.get("sim/final_dev_loss_mean")
        if score is not None:
            s.sim.setdefault(name, []).append(float(score))
        if run.data.tags.get(bt.KIND) == bt.TRAIN_KIND and bt.TRAIN_SEED in run.data.tags:
            steps, values = _history(client, run.info.run_id, "eval/final_dev_loss_mean")
            s.curves.setdefault(name, []).append((run.data.tags[bt.TRAIN_SEED], steps, values))
            s.train_seconds.setdefault(name, []).append(run.data.metrics.get("train_seconds", 0))
    _load_real(client, settings, s)
    return s


def _wanted(settings: Settings, tags: dict[str, str]) -> bool:
    """Is this real run one of the deployments the settings ask for (seeds, pairing)?"""
    try:
        seed = int(tags.get(bt.SEED, "-1"))
        train = int(tags[bt.TRAIN_SEED]) if bt.TRAIN_SEED in tags else None
    except ValueError:
        return False
    if seed not in settings.real_seeds:
        return False
    if train is None:
        return True
    if train not in settings.seeds:
        return False
    return settings.pairing == "cross" or settings.seeds.index(train) == settings.real_seeds.index(
        seed
    )


def _load_real(client: Any, settings: Settings, s: Scores) -> None:
    exp_id = bt.experiment_id(client, settings.real_experiment, create=False)
    if exp_id is None:
        s.notes.append(f"no real runs yet (experiment {settings.real_experiment!r} is empty)")
        return
    runs = search_all(
        client, exp_id, f"tags.`{bt.BENCH}` = '{settings.bench_id}'", newest_first=True
    )
    seen: set[str] = set()
    for run in runs:
        tags = run.data.tags
        name, trial = tags.get(bt.ALGO), tags.get(bt.TRIAL, run.info.run_id)
        if run.info.status != "FINISHED" or name not in s.kinds or trial in seen:
            continue
        if not _wanted(settings, tags) or "final/dev_loss_mean" not in run.data.metrics:
            continue
        seen.add(trial)
        s.real.setdefault(name, []).append(float(run.data.metrics["final/dev_loss_mean"]))
        if "wall_time_s" in run.data.metrics:
            s.real_seconds.setdefault(name, []).append(float(run.data.metrics["wall_time_s"]))


# ----------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One agent on the leaderboard."""

    name: str
    kind: str
    real_n: int
    real_iqm: float
    real_ci: Interval
    sim_n: int
    sim_iqm: float
    sim_ci: Interval
    poi_static: float
    poi_static_ci: Interval
    poi_mos: float
    poi_mos_ci: Interval
    train_s: float
    """Median training seconds per seed in the simulator (NaN: nothing trained)."""
    real_s: float
    """Median wall seconds of a real run."""

    @property
    def gap(self) -> float:
        return self.real_iqm - self.sim_iqm

    @property
    def target_reached(self) -> bool:
        pois = (self.poi_static, self.poi_mos)  # NaN (a reference never ran) is no pass
        return self.kind == "trained" and all(math.isfinite(p) and p >= TARGET_POI for p in pois)


def _aggregate(vals: list[float], n_boot: int) -> tuple[int, float, Interval]:
    if not vals:
        return 0, math.nan, NAN
    return len(vals), iqm(np.array(vals)), stratified_bootstrap_ci(np.array(vals), n_boot=n_boot)


def _poi(x: list[float], ref: list[float] | None, n_boot: int) -> tuple[float, Interval]:
    """P(a run of x ends with a lower loss than a run of ref) and its interval."""
    if not x or not ref:
        return math.nan, NAN
    a, b = np.array(x), np.array(ref)
    return (
        probability_of_improvement(a, b, higher_is_better=False),
        probability_of_improvement_ci(a, b, higher_is_better=False, n_boot=n_boot),
    )


def best_static(s: Scores) -> str | None:
    """The static heuristic with the lowest real IQM (None before any real static run)."""
    have = [n for n in STATIC if s.real.get(n)]
    return min(have, key=lambda n: iqm(np.array(s.real[n]))) if have else None


def rows(s: Scores, n_boot: int = 2000) -> list[Row]:
    """A row per agent, best real IQM first (agents without real runs last, by simulator)."""
    ref = best_static(s)
    out = []
    for name, kind in s.kinds.items():
        real_n, real_iqm, real_ci = _aggregate(s.real.get(name, []), n_boot)
        sim_n, sim_iqm, sim_ci = _aggregate(s.sim.get(name, []), n_boot)
        mine = s.real.get(name, [])
        p_s = _poi(mine, s.real.get(ref) if ref and ref != name else None, n_boot)
        p_m = _poi(mine, s.real.get(MOS_PROP) if name != MOS_PROP else None, n_boot)
        train_s, real_s = _median(s.train_seconds.get(name)), _median(s.real_seconds.get(name))
        row = [real_n, real_iqm, real_ci, sim_n, sim_iqm, sim_ci, *p_s, *p_m, train_s, real_s]
        out.append(Row(name, kind, *row))
    return sorted(out, key=lambda r: (math.isnan(r.real_iqm), _key(r.real_iqm), _key(r.sim_iqm)))


def _median(values: list[float] | None) -> float:
    return float(np.median(values)) if values else math.nan


def _key(x: float) -> float:
    return math.inf if math.isnan(x) else x


# -------------------------------------------------------------------------------- text
def num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:#.4g}".rstrip(".")


def cell(point: float, ci: Interval, n: int) -> str:
    if math.isnan(point):
        return "-"
    if n < 2 or math.isnan(ci.lo):
        return f"{num(point)}*" if n < 2 else num(point)
    return f"{num(point)} [{num(ci.lo)}, {num(ci.hi)}]"


def markdown(settings: Settings, s: Scores, table: list[Row], figures: str | None) -> str:
    """The leaderboard as markdown; `figures`: the folder the PNG links point into (None: no
    images)."""
    ref = best_static(s) or "best static heuristic"
    budget = f"{settings.budget:,}".replace(",", " ")
    lines = [
        f"## Benchmark `{settings.suite.name}`: trained in `{settings.suite.sim.name}`, "
        f"deployed on `{settings.suite.real.name}`",
        "",
        f"Final mean dev loss ↓, IQM [95% stratified bootstrap interval]; `*`: "
        f"{TOO_FEW_RUNS_NOTE}. Trained: {budget} simulated env steps per run, training seeds "
        f"{_seeds(settings.seeds)}; simulator score on {settings.eval_episodes} held-out "
        f"episodes (seed {EVAL_SEED}). Real: every policy frozen, real seeds "
        f"{_seeds(settings.real_seeds)} ({settings.pairing}). P(beats X): probability that a "
        f"real run ends below one of X's. Gap: real minus simulator IQM.",
        "",
        f"| # | agent | kind | real runs | real ↓ | P(beats `{ref}`) ↑ | P(beats `{MOS_PROP}`) ↑ "
        "| sim runs | sim ↓ | sim-to-real gap | train s/seed | real s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(table, 1):
        lines.append(
            f"| {i} | {r.name} | {r.kind} | {r.real_n} | {cell(r.real_iqm, r.real_ci, r.real_n)} "
            f"| {cell(r.poi_static, r.poi_static_ci, r.real_n)} "
            f"| {cell(r.poi_mos, r.poi_mos_ci, r.real_n)} | {r.sim_n} "
            f"| {cell(r.sim_iqm, r.sim_ci, r.sim_n)} | {num(r.gap)} | {num(r.train_s)} "
            f"| {num(r.real_s)} |"
        )
    lines += ["", _target_line(table, ref)]
    if figures is not None:
        lines += [
            "",
            f"![learning curves]({figures}/learning_curves.png)",
            f"![performance profiles]({figures}/performance_profiles.png)",
            f"![simulator vs real]({figures}/sim_vs_real.png)",
        ]
    if s.notes:
        lines += ["", "Notes:", *(f"- {n}" for n in s.notes)]
    return "\n".join(lines) + "\n"


def _seeds(seeds: list[int]) -> str:
    return ",".join(map(str, seeds))


def _target_line(table: list[Row], ref: str) -> str:
    trained = [r for r in table if r.kind == "trained" and r.real_n]
    if not trained:
        return "Target (a policy trained only in the simulator beating both): no real runs yet."
    hits = [r.name for r in trained if r.target_reached]
    if hits:
        verdict = f"reached by {', '.join(hits)}"
    elif not all(math.isfinite(r.poi_static) and math.isfinite(r.poi_mos) for r in trained):
        verdict = f"not judged (needs real runs of a static heuristic and of `{MOS_PROP}`)"
    else:
        verdict = "not reached"
    return (
        f"Target (a policy trained only in the simulator with P(beats `{ref}`) and "
        f"P(beats `{MOS_PROP}`) >= {TARGET_POI}): {verdict}."
    )


def _csv_fields(r: Row) -> dict[str, float | int | str]:
    """One leaderboard row as named numbers, in the CSV's column order."""
    return {
        "agent": r.name, "kind": r.kind, "real_runs": r.real_n, "real_iqm": r.real_iqm,
        "real_ci_low": r.real_ci.lo, "real_ci_high": r.real_ci.hi,
        "poi_best_static": r.poi_static, "poi_best_static_low": r.poi_static_ci.lo,
        "poi_best_static_high": r.poi_static_ci.hi, "poi_mos_prop": r.poi_mos,
        "poi_mos_prop_low": r.poi_mos_ci.lo, "poi_mos_prop_high": r.poi_mos_ci.hi,
        "sim_runs": r.sim_n, "sim_iqm": r.sim_iqm, "sim_ci_low": r.sim_ci.lo,
        "sim_ci_high": r.sim_ci.hi, "sim_to_real_gap": r.gap,
        "train_seconds_median": r.train_s, "real_seconds_median": r.real_s,
    }  # fmt: skip


def leaderboard_csv(table: list[Row]) -> str:
    """Full precision; empty cells where there is no number."""

    def f(x: float | int | str) -> str:
        if isinstance(x, float):
            return "" if math.isnan(x) else repr(x)
        return str(x)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for k, r in enumerate(table):
        fields = _csv_fields(r)
        if k == 0:
            w.writerow(fields)
        w.writerow([f(v) for v in fields.values()])
    return buf.getvalue()


def curves_csv(s: Scores) -> str:
    """One line per algorithm x seed x evaluation point."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["agent", "seed", "env_steps", "sim_final_dev_loss_mean"])
    for name, curves in s.curves.items():
        for seed, steps, values in sorted(curves, key=lambda c: int(c[0])):
            for st, v in zip(steps, values, strict=True):
                w.writerow([name, seed, int(st), repr(float(v))])
    return buf.getvalue()
