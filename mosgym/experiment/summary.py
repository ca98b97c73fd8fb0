"""The end-of-run summary printed by `python -m mosgym.run`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f}±{np.std(vals, ddof=1):.3f}"


def mixture_path_rows(steps: list[int], mixture: list[np.ndarray], max_rows: int = 6) -> list[int]:
    """Indices of a few evenly spread scheduler updates (rows 1.. of the episode log)."""
    n = len(steps) - 1
    if n <= max_rows:
        return list(range(1, n + 1))
    return sorted({int(round(x)) for x in np.linspace(1, n, max_rows)})


def phase_time_lines(results: list[Any]) -> list[str]:
    """Where the time went: seconds and share of the wall time per phase (mean over seeds),
    from the ``time/`` metrics of mosgym.experiment.tracking.log_phase_times."""
    names = [k.removeprefix("time/") for k in results[0].metrics if k.startswith("time/")]
    if not names:  # results restored from a checkpoint written before phase timers existed
        return []
    lines = ["", f"where the time went (mean over {len(results)} seed(s)):"]
    for name in names:
        secs = [r.metrics.get(f"time/{name}", math.nan) for r in results]
        share = [r.metrics.get(f"time_share/{name}", math.nan) for r in results]
        lines.append(f"  {name:<14} {np.nanmean(secs):>9.1f}s  {100 * np.nanmean(share):>5.1f}%")
    return lines


def summary_table(results: list[Any]) -> str:
    """Per-skill dev loss and accuracy (mean±sd over seeds) and the first seed's mixture path."""
    first = results[0]
    names = first.episode.skill_names
    width = max(8, *(len(n) for n in names))
    lines = [f"{'skill':<{width}}  {'dev loss (init -> final)':>26}  {'accuracy':>14}"]
    for i, name in enumerate(names):
        init = first.episode.dev_loss[0][i]
        final = [r.episode.final_eval["dev_loss"][i] for r in results]
        acc = [float(r.episode.final_eval["accuracy"][i]) for r in results]
        lines.append(f"{name:<{width}}  {init:>10.3f} -> {_fmt(final):>13}  {_fmt(acc):>14}")
    final_mean = [r.metrics["final/dev_loss_mean"] for r in results]
    acc_mean = [r.metrics.get("final/accuracy_mean", math.nan) for r in results]
    init_mean = float(np.mean(first.episode.dev_loss[0]))
    lines.append(
        f"{'mean':<{width}}  {init_mean:>10.3f} -> {_fmt(final_mean):>13}  {_fmt(acc_mean):>14}"
    )
    lines.append("")
    lines.append(f"mixture path (seed {first.seed}; row = interval starting at that step):")
    lines.append(f"{'step':>7}  " + " ".join(f"{n[:7]:>7}" for n in names))
    ep = first.episode
    for k in mixture_path_rows(ep.steps, ep.mixture):
        row = " ".join(f"{p:>7.3f}" for p in ep.mixture[k])
        lines.append(f"{ep.steps[k - 1]:>7}  {row}")
    return "\n".join(lines)


def _experiment_id(tracking_uri: str, name: str) -> str | None:
    from mlflow.tracking import MlflowClient

    try:
        exp = MlflowClient(tracking_uri).get_experiment_by_name(name)
    except Exception:  # the summary must not fail over a link
        return None
    return None if exp is None else str(exp.experiment_id)


def _checkpoint_line(folder: str) -> str:
    size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    return (
        f"checkpoints kept in {folder} ({size / 2**20:.0f} MB; --keep-checkpoints): delete the "
        "folder when you no longer need it"
    )


def format_summary(results: list[Any], kept_checkpoints: str | None = None) -> str:
    """The summary table, wall times, the MLflow runs and how to open them in the UI, and
    where checkpoints were kept (`kept_checkpoints`, if any)."""
    from mosgym.experiment.browse import browse_lines

    first = results[0]
    lines = [summary_table(results), ""]
    walls = ", ".join(f"{r.wall_time_s:.1f}s" for r in results)
    lines.append(f"wall time per seed: {walls}")
    lines += [*phase_time_lines(results)[1:], ""]
    lines.append(f"MLflow experiment '{first.experiment}' at {first.tracking_uri}")
    for r in results:
        lines.append(f"  seed {r.seed}: run {r.run_id}")
    exp_id = _experiment_id(first.tracking_uri, first.experiment)
    if exp_id is not None:
        lines += browse_lines(first.tracking_uri, exp_id)
    if kept_checkpoints and Path(kept_checkpoints).is_dir():
        lines.append(_checkpoint_line(kept_checkpoints))
    return "\n".join(lines)


def print_summary(results: list[Any], kept_checkpoints: str | None = None) -> None:
    print(format_summary(results, kept_checkpoints))  # the CLI's output, not library logging
