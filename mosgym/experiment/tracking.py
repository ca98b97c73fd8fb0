"""MLflow: the record of every run (params, per-step metrics, final metrics, artifacts).

Metric names (a contract with mosgym.compare and mosgym.calibrate), with MLflow's `step` = the
optimizer steps done: ``dev_loss/{skill}``, ``dev_loss_mean``, ``reward/{skill}``, ``reward``,
``train_loss``, ``examples/{skill}``, ``tokens/{skill}`` at the end of each interval (dev loss,
examples and tokens also at step 0, before training); ``weight/{skill}`` at the START of the
interval it was used for (as prob_log.csv and the printed mixture path: the step at which the
agent chose it), so the last weight is at step T - S. No reward is logged for agents without one
(``reward.type: none``). Final: ``final/dev_loss/{skill}``, ``final/accuracy/{skill}``,
``final/dev_loss_mean``, ``final/dev_loss_worst``, ``final/accuracy_mean``, ``wall_time_s``,
``time/{phase}`` and ``time_share/{phase}`` (mosgym.timing.PHASES), and ``probe_skipped`` /
``reward_fallback`` only when non-zero. A parent run (several seeds) logs the same final keys,
each the mean over its seeds. Runs carry the tag ``mosgym.format`` = ``2``. Records without it
(format 1) logged each weight at the END of its interval, with a uniform point at step 0, and
parents ``mean/final/...``; mosgym.records reads both.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosgym.errors import MosgymError
from mosgym.experiment import plots
from mosgym.experiment.episode import EpisodeLog
from mosgym.records.store import check_writable

log = logging.getLogger(__name__)

RECORD_FORMAT = "2"
"""Tag mosgym.format of the runs written here (see the module docstring)."""
# MLflow caps a param value at 6000 characters (older servers: 500); long lists are cut.
_MAX_PARAM_LEN = 500


def git_commit() -> str:
    """The commit of the checkout mosgym runs from, or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_tracking_server() -> str:
    """Fail fast, before any training, when the tracking store cannot be reached."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = mlflow.get_tracking_uri()
    check_writable(uri)  # else MLflow retries a read-only sqlite store for about 2 minutes
    if uri.startswith(("http://", "https://")):
        # Few retries: an unreachable server should be reported in seconds, not minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # any failure here means we cannot record the run
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MosgymError(
            f"MLflow tracking store {uri} is not reachable ({first[:200]}); start the server or "
            "set MLFLOW_TRACKING_URI to a reachable one (unset it to use ./mlflow.db)"
        ) from None
    return uri


def _param_value(v: Any) -> str:
    s = "null" if v is None else str(v)
    return s if len(s) <= _MAX_PARAM_LEN else s[: _MAX_PARAM_LEN - 3] + "..."


def log_params(params: dict[str, Any]) -> None:
    """Log params (see mosgym.experiment.run_params for which) to the active run."""
    import mlflow

    items = [(k, _param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow's batch limit is 100 params
        mlflow.log_params(dict(items[i : i + 100]))


def step_metrics(ep: EpisodeLog, rewards: bool = True) -> dict[int, dict[str, float]]:
    """Metrics of the latest recorded env step (row -1 of the episode log), by MLflow step.

    The weights of row k are the mixture of the interval that started at steps[k - 1]; they
    go there. Row 0 (the reset) has no interval yet: dev loss, examples and tokens only.
    `rewards`: False for agents without a reward (reward.type none), whose rewards are zeros.
    """
    names = ep.skill_names
    dev, rew = ep.dev_loss[-1], ep.skill_rewards[-1]
    m: dict[str, float] = {"dev_loss_mean": float(np.mean(dev))}
    for i, name in enumerate(names):
        m[f"dev_loss/{name}"] = float(dev[i])
        m[f"examples/{name}"] = float(ep.examples[-1][i])
        m[f"tokens/{name}"] = float(ep.tokens[-1][i])
        if rewards and math.isfinite(rew[i]):
            m[f"reward/{name}"] = float(rew[i])
    if rewards and math.isfinite(ep.reward[-1]):
        m["reward"] = ep.reward[-1]
    if math.isfinite(ep.train_loss[-1]):
        m["train_loss"] = ep.train_loss[-1]
    out = {ep.steps[-1]: m}
    if len(ep.steps) > 1:
        mix = ep.mixture[-1]
        out[ep.steps[-2]] = {f"weight/{name}": float(mix[i]) for i, name in enumerate(names)}
    return out


def final_metrics(ep: EpisodeLog, wall_time_s: float) -> dict[str, float]:
    """End-of-run metrics: per-skill and mean dev loss and accuracy, wall time."""
    assert ep.final_eval is not None
    dev, acc = ep.final_eval["dev_loss"], ep.final_eval["accuracy"]
    m: dict[str, float] = {
        "final/dev_loss_mean": float(np.mean(dev)),
        "final/dev_loss_worst": float(np.max(dev)),
        "wall_time_s": float(wall_time_s),
    }
    # Diagnostics that are almost always zero: a flat zero line would lead the chart view.
    if ep.probe_skipped:
        m["probe_skipped"] = float(ep.probe_skipped)
    if ep.reward_fallback:
        m["reward_fallback"] = float(ep.reward_fallback)
    for i, name in enumerate(ep.skill_names):
        m[f"final/dev_loss/{name}"] = float(dev[i])
        if math.isfinite(acc[i]):
            m[f"final/accuracy/{name}"] = float(acc[i])
    if np.isfinite(acc).any():
        m["final/accuracy_mean"] = float(np.nanmean(acc))
    return m


def log_phase_times(seconds: dict[str, float]) -> dict[str, float]:
    """Where the run's time went, as final metrics of the active run: ``time/{phase}`` in
    seconds and ``time_share/{phase}``, its share of the run's wall time (the phases are
    exclusive and include 'other', so the shares add up to 1). Returns what it logged."""
    import mlflow

    total = sum(seconds.values())
    m: dict[str, float] = {}
    for name, s in seconds.items():
        m[f"time/{name}"] = float(s)
        m[f"time_share/{name}"] = float(s / total) if total > 0 else math.nan
    mlflow.log_metrics(m)
    return m


def prob_log_csv(ep: EpisodeLog) -> str:
    """The mixture path, one row per scheduler update (like the authors' prob_log)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", *ep.skill_names])
    # Row k > 0 holds the mixture used during the interval that ended at steps[k]; write it
    # against the step where that interval started, which is when the decision was made.
    for start, mix in zip(ep.steps[:-1], ep.mixture[1:], strict=True):
        w.writerow([start, *(f"{p:.6f}" for p in mix)])
    return buf.getvalue()


def log_episode_artifacts(ep: EpisodeLog, config: dict[str, Any], title: str) -> None:
    """Resolved config, probability log and plots, as artifacts of the active run."""
    import mlflow

    mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
    mlflow.log_text(prob_log_csv(ep), "prob_log.csv")
    if len(ep.steps) > 1:
        fig = plots.mixture_figure(ep.steps, np.array(ep.mixture[1:]), ep.skill_names, title)
        mlflow.log_figure(fig, "plots/mixture.png")
        plots.close(fig)
    fig = plots.dev_loss_figure(ep.steps, np.array(ep.dev_loss), ep.skill_names, title)
    mlflow.log_figure(fig, "plots/dev_loss.png")
    plots.close(fig)


class MlflowStepLogger:
    """The per-env-step callback: logs the newest row of the episode log to the active run.

    A resumed run passes `logged_through`, the last step already in the run's history: a step
    logged just before the process died is then not logged twice. `rewards`: see step_metrics.
    """

    def __init__(self, run_id: str, logged_through: int = -1, rewards: bool = True) -> None:
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.client = MlflowClient()
        self.logged_through = logged_through
        self.rewards = rewards

    def __call__(self, ep: EpisodeLog) -> None:
        if ep.steps[-1] <= self.logged_through:
            return
        metrics = [
            m
            for step, values in step_metrics(ep, self.rewards).items()
            for m in _metric_entities(values, step=step)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)


def last_logged_step(run_id: str) -> int:
    """The highest step of the run's per-step metrics (-1 if none): where a resume picks up."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient().get_metric_history(run_id, "dev_loss_mean")
    return max((m.step for m in history), default=-1)


def _metric_entities(metrics: dict[str, float], step: int) -> list[Any]:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    return [Metric(k, v, ts, step) for k, v in metrics.items()]


def log_sb3_metrics(run_id: str, values: dict[str, float], step: int) -> None:
    """Stable-Baselines3's own logger routed into the run (keys arrive prefixed 'sb3/')."""
    from mlflow.tracking import MlflowClient

    metrics = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
    if metrics:
        MlflowClient().log_batch(run_id, metrics=_metric_entities(metrics, step=step))
