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

Algorithms trained on the real env instead (`--stage real-train`, mosgym.benchmark.real_train)
appear as ``ALGO-real`` rows of kind "trained on real": their deployments (of the policies
trained on the most real episodes found), the real training time per seed, and the final mean
dev loss of every training episode (their learning curve over real episodes). Offline RL
(`--stage offline`, mosgym.benchmark.offline) appears as ``ALGO-offline`` rows of kind "offline":
policies learnt from logged real runs only, with their training time per seed.
"""

from __future__ import annotations

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
from mosgym.records.runs import metric_history, search_all

MOS_PROP = "mos-prior-tau1"
TARGET_POI = 0.75
OFFLINE_ROW = "offline"
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
    real_train: dict[str, list[tuple[int, int, float, float]]] = field(default_factory=dict)
    """Algorithms trained on the real env (ppo-real): per episode run (training seed, episode,
    final mean dev loss, wall seconds)."""
    real_episodes: dict[str, int] = field(default_factory=dict)
    """ppo-real -> the real episodes behind its deployed policies."""


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
            steps, values = metric_history(client, run.info.run_id, "eval/final_dev_loss_mean")
            s.curves.setdefault(name, []).append((run.data.tags[bt.TRAIN_SEED], steps, values))
            s.train_seconds.setdefault(name, []).append(run.data.metrics.get("train_seconds", 0))
    _load_real(client, settings, s)
    trained: set[tuple[str, str | None]] = set()
    for run in bt.children(client, parent, bt.OFFLINE_KIND):  # newest first: the policy in use
        name, key = run.data.tags.get(bt.ALGO, ""), run.data.tags.get(bt.TRAIN_SEED)
        if run.info.status == "FINISHED" and s.kinds.get(name) == OFFLINE_ROW:
            if (name, key) not in trained:
                trained.add((name, key))
                s.train_seconds.setdefault(name, []).append(
                    run.data.metrics.get("train_seconds", 0)
                )
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
    routes: dict[str, list[tuple[int, Any]]] = {}
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        name, trial = tags.get(bt.ALGO) or "", tags.get(bt.TRIAL, run.info.run_id)
        route, offline = _real_route(settings, name), name.endswith(bt.OFFLINE)
        known = name in s.kinds or route or offline
        if run.info.status != "FINISHED" or trial in seen or not known:
            continue
        if "final/dev_loss_mean" not in metrics:
            continue
        if tags.get(bt.ROLE) == bt.TRAIN_ROLE:  # an episode the policy learnt from
            seen.add(trial)
            if route and int(tags.get(bt.TRAIN_SEED, "-1")) in settings.seeds:
                point = (int(tags[bt.TRAIN_SEED]), int(tags.get(bt.EPISODE, "0")))
                wall = float(metrics.get("wall_time_s", math.nan))
                s.real_train.setdefault(name, []).append(
                    (*point, metrics["final/dev_loss_mean"], wall)
                )
            continue
        if not _wanted(settings, tags):
            continue
        seen.add(trial)
        if route:  # kept apart until we know which episode count is the longest
            routes.setdefault(name, []).append((int(tags.get(bt.EPISODES, "0")), run))
            continue
        if offline:  # retrained (other --offline-steps): the newest policy's runs only
            key = f"{name}/{tags.get(bt.TRAIN_SEED)}/{tags.get(bt.SEED)}"
            if key in seen:
                continue
            seen.add(key)
            s.kinds[name] = OFFLINE_ROW
        _add_real(s, name, metrics)
    for name, found in routes.items():
        longest = max(e for e, _ in found)
        s.kinds[name], s.real_episodes[name] = "trained on real", longest
        for _, run in (x for x in found if x[0] == longest):
            _add_real(s, name, run.data.metrics)
        by_seed: dict[int, float] = {}
        for seed, episode, _, wall in s.real_train.get(name, []):
            if episode < longest:
                by_seed[seed] = by_seed.get(seed, 0.0) + wall
        s.train_seconds[name] = list(by_seed.values())


def _real_route(settings: Settings, name: str) -> bool:
    """Is `name` an algorithm of this benchmark trained on the real env (ppo-real)?"""
    base, suffix = name[: -len(bt.ROUTE)], name[-len(bt.ROUTE) :]
    return suffix == bt.ROUTE and base in settings.entries


def _add_real(s: Scores, name: str, metrics: dict[str, float]) -> None:
    s.real.setdefault(name, []).append(float(metrics["final/dev_loss_mean"]))
    if "wall_time_s" in metrics:
        s.real_seconds.setdefault(name, []).append(float(metrics["wall_time_s"]))


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
    lines += real_train_lines(s)
    if OFFLINE_ROW in s.kinds.values():
        lines += [
            "",
            f"`ALGO{bt.OFFLINE}`: CQL or IQL (d3rlpy) learnt from the real runs already in MLflow "
            "(every usable run of this env, the real seeds a policy is scored on left out), "
            "exported as a frozen SAC actor and deployed like the others.",
        ]
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


def real_train_lines(s: Scores) -> list[str]:
    """The real-training route: what each `-real` row is and its curve over real episodes."""
    if not s.real_episodes:
        return []
    longest = max(s.real_episodes.values())
    lines = [
        "",
        f"`ALGO{bt.ROUTE}`: the same entry trained on the real env itself, across real episodes "
        "(each a fresh fine-tuning run from the same initial weights, seeds 10000 + 1000 x "
        "training seed + episode), then frozen and deployed like the others; its train s/seed "
        "is those episodes' wall time. Final mean dev loss of each training episode, mean "
        "over training seeds:",
        "",
        "| agent | " + " | ".join(f"ep {k + 1}" for k in range(longest)) + " |",
        "|---|" + "---|" * longest,
    ]
    for name in sorted(s.real_episodes):
        by_episode: dict[int, list[float]] = {}
        for _, episode, loss, _ in s.real_train.get(name, []):
            by_episode.setdefault(episode, []).append(loss)
        cells = [
            num(float(np.mean(by_episode[k]))) if k in by_episode else "-" for k in range(longest)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


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
