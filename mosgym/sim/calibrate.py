"""Calibrate the simulator (mosgym/MoSSim-v0) from logged runs of the real environment.

    python -m mosgym.calibrate --experiment skills-tiny --out envs/sim-skills-tiny.yaml
        [--tracking-uri URI | --archive DIR] [--holdout K | --holdout-runs ID,ID] [--base ...]

Reads every run of the MLflow experiment (the tracking contract): metrics "dev_loss/{skill}",
"examples/{skill}" (cumulative) and "tokens/{skill}" with step = optimizer steps; params
"env.skills" (older records: "env.skills.N.name", "env.skills.N.n_train") and "env.train.*".
The train sizes come from n_train params where logged, else from the tag "mosgym.train_sizes"
(a JSON list in skill order; mosgym.run writes it), else from the built-in suite's sizes when
the skills are the built-in ones. A run whose
metrics restart at step 0 (several episodes) gives one curve per episode.

The fit itself is mosgym.sim.fit (pure, on arrays). Runs are grouped by mixture policy (tag
"mosgym.agent"); held-out groups are never used for fitting, and the report gives R^2 and the
relative error per skill on them: a table on stdout, `<out stem>.report.json` and `.report.md`.
The output YAML is a complete env config (learner: sim) that `gym.make("mosgym/MoSSim-v0",
config=...)` loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosgym.config import read_yaml
from mosgym.errors import MosgymError
from mosgym.records.runs import make_client, run_config
from mosgym.sim.calibration_output import report_markdown, write_outputs
from mosgym.sim.fit import (
    FitResult,
    RunCurves,
    choose_transfer_ridge,
    fit_report,
    fit_sim_params,
    split_holdout,
)
from mosgym.sim.learner import parse_sim_params

TRAIN_KEYS = ("total_steps", "interval", "batch_size", "probe_size")


@dataclass
class CalibrationData:
    """Everything read from one experiment."""

    skill_names: list[str]
    train_sizes: np.ndarray
    """(N,) int64."""
    runs: list[RunCurves]
    train: dict[str, int] = field(default_factory=dict)
    """train.* settings of the first run (for the output config)."""
    tokens_per_example: list[int] = field(default_factory=list)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return None


def _skills_of(run: Any) -> tuple[list[str], list[int | None]]:
    """Skill names and train sizes from a run's params (and tags, for the sizes)."""
    params, names, sizes = run.data.params, [], []
    one_param = bool(params.get("env.skills"))
    if one_param:  # records since mosgym.format 2: sizes are in the tag
        names = params["env.skills"].split(",")
        sizes = [None] * len(names)
    while not one_param and f"env.skills.{len(names)}.name" in params:
        i = len(names)
        names.append(params[f"env.skills.{i}.name"])
        sizes.append(_int_or_none(params.get(f"env.skills.{i}.n_train")))
    if not names:  # no skills in the config: the env used the built-in suite
        names = sorted(k.split("/", 1)[1] for k in run.data.metrics if k.startswith("dev_loss/"))
        sizes = [None] * len(names)
        from mosgym.data.builtin import DEFAULT_SIZES, default_skill_configs

        if set(names) == set(DEFAULT_SIZES):
            names = [s.name for s in default_skill_configs()]
            sizes = [DEFAULT_SIZES[n] for n in names]
    tag = run.data.tags.get("mosgym.train_sizes")
    if tag and any(s is None for s in sizes):
        sizes = [int(x) for x in json.loads(tag)]
    return names, sizes


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) in logging order (timestamp, then step)."""
    hist = client.get_metric_history(run_id, key)
    return [
        (int(m.step), float(m.value)) for m in sorted(hist, key=lambda m: (m.timestamp, m.step))
    ]


def _episodes(history: list[tuple[int, float]]) -> list[dict[int, float]]:
    """Split a metric history into episodes wherever the step does not increase."""
    out: list[dict[int, float]] = []
    last = None
    for step, value in history:
        if last is None or step <= last:
            out.append({})
        out[-1][step] = value
        last = step
    return out


def _curves(client: Any, run: Any, names: list[str]) -> list[RunCurves]:
    """One RunCurves per logged episode with a point at step 0 and every skill's metrics."""
    rid = run.info.run_id
    dev = [_episodes(_history(client, rid, f"dev_loss/{s}")) for s in names]
    ex = [_episodes(_history(client, rid, f"examples/{s}")) for s in names]
    group = run.data.tags.get("mosgym.agent", rid)
    curves = []
    for e in range(min(len(d) for d in dev)):
        steps = sorted(set.intersection(*(set(d[e]) for d in dev)))
        if not steps or steps[0] != 0 or len(steps) < 2:
            continue
        exposure = [
            [ex[i][e].get(t, 0.0) if e < len(ex[i]) else 0.0 for t in steps]
            for i in range(len(names))
        ]
        curves.append(
            RunCurves(
                run_id=rid if e == 0 else f"{rid}#{e}",
                steps=np.array(steps, dtype=np.int64),
                examples=np.array(exposure, dtype=np.float64).T,
                dev_loss=np.array([[dev[i][e][t] for t in steps] for i in range(len(names))]).T,
                group=group,
            )
        )
    return curves


def _search(
    experiment: str, tracking_uri: str | None, archive: str | None = None
) -> tuple[Any, list[Any], str]:
    from mlflow.tracking import MlflowClient

    client = make_client(None, archive) if archive else MlflowClient(tracking_uri)
    uri = f"archive {archive}" if archive else tracking_uri or "the default tracking URI"
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise MosgymError(
            f"calibration: no MLflow experiment '{experiment}' at {uri} (check --experiment and "
            "--tracking-uri)"
        )
    runs = client.search_runs([exp.experiment_id], max_results=50_000)
    runs = [r for r in runs if r.data.tags.get("mosgym.kind", "run") == "run"]
    if not runs:
        raise MosgymError(
            f"calibration: experiment '{experiment}' at {uri} has no runs; log runs of the real "
            "env first (python -m mosgym.run --env ... )"
        )
    return client, runs, uri


def read_runs(
    experiment: str, tracking_uri: str | None = None, archive: str | None = None
) -> CalibrationData:
    """Curves, skills and train settings of every run of `experiment` (one skill set), from
    MLflow or from a run archive (mosgym.records.archive)."""
    client, runs, uri = _search(experiment, tracking_uri, archive)
    names, sizes = _skills_of(runs[0])
    for r in runs[1:]:
        other, _ = _skills_of(r)
        if other != names:
            raise MosgymError(
                f"calibration: runs of '{experiment}' use different skill sets: "
                f"{runs[0].info.run_id} has {names}, {r.info.run_id} has {other}; calibrate "
                "one skill set per experiment"
            )
    if not names or any(s is None or s <= 0 for s in sizes):
        raise MosgymError(
            f"calibration: run {runs[0].info.run_id} does not say its skills' train sizes: "
            "log params env.skills.N.n_train or the tag mosgym.train_sizes (a JSON list)"
        )
    curves = [c for r in runs for c in _curves(client, r, names)]
    if not curves:
        raise MosgymError(
            f"calibration: no run of '{experiment}' at {uri} has dev_loss/examples metrics "
            "from step 0 for every skill"
        )
    return CalibrationData(
        names,
        np.array(sizes, dtype=np.int64),
        curves,
        _train_settings(client, runs[0]),
        _tokens_per_example(runs, names),
    )


def _train_settings(client: Any, run: Any) -> dict[str, int]:
    """The budget and probe size the simulator copies from the real env, from the run's params,
    then from its config.yaml for what the params leave out: a static run logs no probe_size
    (it probes nothing), yet the simulator must probe as many examples as the env it stands
    for, or its MoS rewards are less noisy than the real ones."""
    params = run.data.params
    train = {k: v for k in TRAIN_KEYS if (v := _int_or_none(params.get(f"env.train.{k}")))}
    if len(train) < len(TRAIN_KEYS) and (raw := run_config(client, run.info.run_id)):
        logged = ((yaml.safe_load(raw) or {}).get("env") or {}).get("train") or {}
        for k in TRAIN_KEYS:
            if k not in train and (v := _int_or_none(logged.get(k))) is not None:
                train[k] = v
    return train


def _tokens_per_example(runs: list[Any], names: list[str]) -> list[int]:
    """Mean trained tokens per example from the runs' last logged counts (16 when unknown)."""
    out = []
    for s in names:
        tok = sum(r.data.metrics.get(f"tokens/{s}", 0.0) for r in runs)
        ex = sum(r.data.metrics.get(f"examples/{s}", 0.0) for r in runs)
        out.append(max(1, round(tok / ex)) if ex > 0 and tok > 0 else 16)
    return out


# --------------------------------------------------------------------------------------------
# Outputs (the files: mosgym.sim.calibration_output)


def build_config(
    data: CalibrationData, fit: FitResult, name: str, base: dict[str, Any] | None
) -> dict[str, Any]:
    """The complete env config (learner: sim) for the fitted parameters."""
    kept = {k: v for k, v in (base or {}).items() if k in ("reward", "action")}
    sim = dict((base or {}).get("sim") or {})
    sim.update(fit.sim_block())
    sim.setdefault("tokens_per_example", data.tokens_per_example)
    train = dict((base or {}).get("train") or {})
    train.update(data.train)
    cfg = {
        "name": name,
        "learner": "sim",
        "skills": [
            {"name": n, "n_train": int(s)}
            for n, s in zip(data.skill_names, data.train_sizes, strict=True)
        ],
        "train": train,
        **kept,
        "sim": sim,
    }
    parse_sim_params(cfg["sim"], len(data.skill_names), "calibrated config")  # must load back
    return cfg


def calibrate(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read, split, fit, evaluate: (config, report)."""
    data = read_runs(args.experiment, args.tracking_uri, args.archive)
    held_ids = args.holdout_runs.split(",") if args.holdout_runs else None
    fit_runs, held = split_holdout(data.runs, args.holdout, held_ids)
    ridge, cv = args.transfer_ridge, None
    if ridge == "cv":
        ridge, cv = choose_transfer_ridge(
            fit_runs, data.train_sizes, args.transfer_ridge_grid, overfit_epochs=args.overfit_epochs
        )
    fit = fit_sim_params(
        fit_runs, data.train_sizes, overfit_epochs=args.overfit_epochs, transfer_ridge=ridge
    )
    base = read_yaml(args.base) if args.base else None
    config = build_config(data, fit, Path(args.out).stem, base)
    report = {
        "experiment": args.experiment,
        "skills": data.skill_names,
        "fit_runs": [r.run_id for r in fit_runs],
        "holdout_runs": [r.run_id for r in held],
        "holdout_groups": sorted({r.group for r in held}),
        "holdout": fit_report(fit, held, data.train_sizes, data.skill_names),
        "fit": fit_report(fit, fit_runs, data.train_sizes, data.skill_names),
        "cost": fit.cost,
        "transfer_ridge": ridge if np.isfinite(ridge) else "inf",  # strict JSON has no inf
    }
    if cv is not None:
        report["transfer_ridge_cv"] = {str(k): v for k, v in cv.items()}
    return config, report


def _ridge_arg(text: str) -> float | str:
    if text == "cv":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN fails too; inf means no transfer at all
        raise argparse.ArgumentTypeError(f"{text!r}: give a number >= 0 (or inf) or 'cv'")
    return value


def _ridge_grid(text: str) -> tuple[float, ...]:
    try:
        values = [_ridge_arg(v.strip()) for v in text.split(",") if v.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values or any(isinstance(v, str) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers >= 0 (or inf), comma-separated")
    return tuple(float(v) for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mosgym.calibrate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  mosgym calibrate --experiment calib-skills-tiny --out envs/sim-skills-tiny.yaml\n"
        "  mosgym calibrate --experiment calib-skills-tiny --holdout 6 --out envs/sim-x.yaml\n"
        "  mosgym calibrate --experiment calib-skills-smollm2 --holdout 3 --transfer-ridge cv "
        "--out envs/sim-skills-smollm2.yaml",
    )
    parser.add_argument("--experiment", required=True, help="MLflow experiment of real-env runs")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    source.add_argument("--archive", default=None, help="read a run archive, not MLflow")
    hold = parser.add_mutually_exclusive_group()
    hold.add_argument(
        "--holdout",
        type=int,
        default=None,
        help="hold out the runs of the last K mixture groups (default 1)",
    )
    hold.add_argument("--holdout-runs", default=None, help="comma-separated run ids to hold out")
    parser.add_argument("--out", required=True, help="output YAML, e.g. envs/sim-skills-tiny.yaml")
    parser.add_argument(
        "--base",
        default=None,
        help="YAML whose reward, action, train and non-fitted sim keys to keep",
    )
    parser.add_argument(
        "--overfit-epochs",
        type=float,
        default=1.0,
        help="epochs before a skill starts to overfit (fixed, default 1)",
    )
    parser.add_argument(
        "--transfer-ridge",
        type=_ridge_arg,
        default=0.0,
        help="penalty lambda on the squared transfer coefficients (inf: no transfer), or 'cv' "
        "to choose it by leave-one-mixture-out cross-validation (default 0: no penalty)",
    )
    parser.add_argument(
        "--transfer-ridge-grid",
        type=_ridge_grid,
        default=(0.0, 0.01, 0.1, 1.0, 10.0, 100.0, float("inf")),
        help="the lambdas 'cv' compares, comma-separated (default 0,0.01,0.1,1,10,100,inf; inf: "
        "no transfer at all; each costs one fit per mixture group)",
    )
    args = parser.parse_args(argv)
    try:
        config, report = calibrate(args)
        js, md = write_outputs(Path(args.out), config, report)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    print(report_markdown(report))
    print(f"wrote {args.out}, {js}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
