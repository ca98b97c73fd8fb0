"""Fair hyperparameters: each algorithm's entry tuned in the simulator with Optuna.

`mosgym benchmark --stage tune --algos ppo mos --trials 30` runs, per algorithm, a TPE search
(seeded) over the algorithm's knobs, starting from its current entry. A trial trains an SB3
algorithm for --tune-budget simulated env steps per --tune-seeds seed and scores the final
policy on --tune-episodes held-out simulated episodes; an in-episode learner (MoS, ODM) is
scored on those episodes directly, its knobs (MoS: lr, update steps, prior, interval; ODM:
alpha, reward scale) being all there is to fit. The score is the final mean dev loss (lower is
better), on a held-out stream of its own (seed TUNE_SEED) so that the benchmark's evaluation
episodes are never tuned on. SB3 trials report their learning curve and are pruned by the
median rule. The best trial's entry is written to agents/bench/<suite>/<algo>.yaml with the
budget and the producing command in its header.

Resumable: the study lives in an SQLite file (default <out>/optuna.db) under a name hashing
the suite, the starting entry and the budget; rerunning the command adds only the missing
trials. Needs the optional extra `mosgym[tune]` (optuna).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosgym.benchmark.protocol import Settings
from mosgym.benchmark.simeval import TUNE_SEED, score_agent
from mosgym.benchmark.suite import Entry, base_algo, digest, load_entry, parse_entry
from mosgym.benchmark.train import train_sb3
from mosgym.config import read_yaml, to_dict
from mosgym.errors import MosgymError
from mosgym.experiment.request import config_dirs, parse_seeds
from mosgym.experiment.sim2real import SimScore
from mosgym.experiment.tracking import git_commit

log = logging.getLogger(__name__)
NETS = {"64x64": [64, 64], "128x128": [128, 128]}
GAMMAS = [0.9, 0.95, 0.99, 1.0]
Space = Callable[[Any, dict[str, Any], int], None]


def _hp(data: dict[str, Any]) -> dict[str, Any]:
    return data["agent"].setdefault("params", {}).setdefault("hyperparams", {})


def _net(trial: Any, hp: dict[str, Any]) -> None:
    kwargs = dict(hp.get("policy_kwargs") or {})
    kwargs["net_arch"] = NETS[trial.suggest_categorical("net_arch", list(NETS))]
    hp["policy_kwargs"] = kwargs


def _on_policy(trial: Any, data: dict[str, Any], total_steps: int, steps: list[int]) -> None:
    hp = _hp(data)
    hp["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True)
    hp["n_steps"] = trial.suggest_categorical("n_steps", steps)
    hp["gamma"] = trial.suggest_categorical("gamma", GAMMAS)
    hp["gae_lambda"] = trial.suggest_categorical("gae_lambda", [0.9, 0.95, 1.0])
    hp["ent_coef"] = trial.suggest_float("ent_coef", 1e-6, 1e-2, log=True)
    _net(trial, hp)
    hp["policy_kwargs"]["log_std_init"] = trial.suggest_float("log_std_init", -2.0, 0.0)


def ppo_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    _on_policy(trial, data, total_steps, [16, 32, 64, 128])
    hp = _hp(data)
    hp["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256])
    hp["n_epochs"] = trial.suggest_categorical("n_epochs", [3, 5, 10])
    hp["clip_range"] = trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3])


def a2c_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    _on_policy(trial, data, total_steps, [5, 8, 16, 32])


def _off_policy(trial: Any, data: dict[str, Any], batches: list[int]) -> dict[str, Any]:
    hp = _hp(data)
    hp["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True)
    hp["batch_size"] = trial.suggest_categorical("batch_size", batches)
    hp["gamma"] = trial.suggest_categorical("gamma", GAMMAS)
    hp["gradient_steps"] = trial.suggest_categorical("gradient_steps", [1, 2, 4])
    hp["learning_starts"] = trial.suggest_categorical("learning_starts", [100, 1000])
    _net(trial, hp)
    return hp


def sac_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    hp = _off_policy(trial, data, [64, 128, 256])
    hp["tau"] = trial.suggest_categorical("tau", [0.005, 0.01, 0.02, 0.05])


def td3_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    hp = _off_policy(trial, data, [64, 128, 256])
    hp["tau"] = trial.suggest_categorical("tau", [0.005, 0.01, 0.02, 0.05])
    sigma = trial.suggest_float("action_noise_sigma", 0.05, 0.5)
    data["agent"]["params"]["action_noise_sigma"] = sigma


def dqn_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    hp = _off_policy(trial, data, [32, 64, 128])
    hp["target_update_interval"] = trial.suggest_categorical(
        "target_update_interval", [100, 500, 1000]
    )
    hp["exploration_fraction"] = trial.suggest_float("exploration_fraction", 0.05, 0.5)
    hp["exploration_final_eps"] = trial.suggest_categorical(
        "exploration_final_eps", [0.01, 0.05, 0.1]
    )


def mos_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    params = data["agent"].setdefault("params", {})
    # Below the paper's 1e-4 the scorer hardly moves in 20 updates, and the warm-up (same Adam,
    # same lr) to a PROP prior takes 10^5 steps.
    params["lr"] = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    params["update_steps"] = trial.suggest_categorical("update_steps", [1, 10, 50, 200, 500])
    tau = trial.suggest_categorical("prior_tau", ["1", "2", "5", "10", "inf"])
    params["prior_tau"] = "inf" if tau == "inf" else float(tau)
    intervals = [s for s in (10, 20, 25, 50, 100) if s <= total_steps and total_steps % s == 0]
    if intervals:
        data["interval"] = trial.suggest_categorical("interval", intervals)


def odm_space(trial: Any, data: dict[str, Any], total_steps: int) -> None:
    params = data["agent"].setdefault("params", {})
    params["alpha"] = trial.suggest_float("alpha", 0.5, 0.99)
    params["reward_scale"] = trial.suggest_float("reward_scale", 0.01, 10.0, log=True)


SPACES: dict[str, Space] = {
    "ppo": ppo_space,
    "a2c": a2c_space,
    "sac": sac_space,
    "td3": td3_space,
    "dqn": dqn_space,
    "mos": mos_space,
    "odm": odm_space,
}


class Tuning:
    """One algorithm's study: the objective and the entry it writes."""

    def __init__(
        self,
        settings: Settings,
        algo: str,
        budget: int,
        seeds: list[int],
        episodes: int,
        hparams: str | None = None,
    ) -> None:
        # The search starts from --hparams, else the default entry, never from the suite's
        # tuned file: that is this search's output, and starting from it would make a rerun
        # after an interruption a new study instead of the same one resumed.
        self.entry = load_entry(algo, "default", hparams)
        self.settings, self.algo = settings, algo
        self.budget, self.seeds, self.episodes = budget, seeds, episodes
        self.base = read_yaml(self.entry.path)

    def candidate(self, trial: Any) -> tuple[dict[str, Any], Entry]:
        data = copy.deepcopy(self.base)
        SPACES[base_algo(self.algo)](trial, data, self.settings.suite.sim.train.total_steps)
        return data, parse_entry(self.algo, data, self.entry.path)

    def objective(self, trial: Any) -> float:
        import optuna

        _, entry = self.candidate(trial)
        sim = entry.sim_config(self.settings.suite)
        if not entry.trains:
            return score_agent(sim, entry.agent, self.episodes, TUNE_SEED).final_dev_loss
        finals = []
        for k, seed in enumerate(self.seeds):
            points: list[SimScore] = []

            def on_eval(steps: int, score: SimScore, k: int = k, points: list = points) -> None:
                points.append(score)
                if k == 0:  # the first seed's curve decides pruning
                    trial.report(score.final_dev_loss, len(points) - 1)
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            train_sb3(
                entry,
                sim,
                seed,
                self.budget,
                max(1, self.budget // 4),
                self.episodes,
                on_eval,
                self.settings.dr_spread,
                TUNE_SEED,
            )
            finals.append(points[-1].final_dev_loss)
        return float(np.mean(finals))

    def study_name(self) -> str:
        return f"{self.settings.suite.name}-{self.algo}-" + digest(
            {
                "sim": to_dict(self.settings.suite.sim),
                "base": self.base,
                "budget": self.budget,
                "seeds": self.seeds,
                "episodes": self.episodes,
                "tune_seed": TUNE_SEED,
            }
        )


def tune(tuning: Tuning, trials: int, storage: str, out: Path, command: str) -> Path:
    """Run the missing trials of the study, write the best entry, return its path."""
    try:
        import optuna
    except ImportError:
        raise MosgymError(
            "tuning needs Optuna: pip install 'mosgym[tune]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=tuning.study_name(),
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    missing = trials - len(study.get_trials(deepcopy=False, states=states))
    if missing > 0:
        log.info("tuning %s: %d trials to run (of %d)", tuning.algo, missing, trials)
        study.optimize(
            tuning.objective, n_trials=missing, catch=(MosgymError,), callbacks=[_log_trial]
        )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise MosgymError(f"tuning {tuning.algo}: no trial completed (see the log)")
    return _write_best(tuning, study, trials, out, command)


def _log_trial(study: Any, trial: Any) -> None:
    log.info(
        "  trial %d: %s %s",
        trial.number,
        trial.state.name,
        "" if trial.value is None else f"{trial.value:.4f}",
    )


def _write_best(tuning: Tuning, study: Any, trials: int, out: Path, command: str) -> Path:
    best = study.best_trial
    import optuna

    data, _ = tuning.candidate(optuna.trial.FixedTrial(best.params))
    seeds = ",".join(map(str, tuning.seeds))
    what = (
        f"training {tuning.budget} simulated env steps per seed ({seeds})"
        if tuning.entry.trains
        else "with no training (it learns within each episode)"
    )
    header = (
        f"# Tuned by: {command}\n"
        f"# Budget: {trials} Optuna trials (TPE seed 0, median pruning) {what}, each scored on "
        f"{tuning.episodes} held-out simulated episodes (seed {TUNE_SEED}).\n"
        f"# Best: final mean dev loss {best.value:.4f} (trial {best.number}); started from "
        f"{_shown(Path(tuning.entry.path))}.\n"
        f"# {datetime.date.today().isoformat()}, commit {git_commit()[:12]}\n"
    )
    path = out / f"{base_algo(tuning.algo)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _shown(path: Path) -> str:
    """A path as a header shows it: relative to the working folder when inside it (no
    machine's home folder in a committed file)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def tune_from_args(args: argparse.Namespace, settings: Settings) -> list[Path]:
    """--stage tune: every algorithm of --algos, in turn."""
    if args.trials < 1:
        raise MosgymError(f"--trials {args.trials}: must be >= 1")
    budget = args.tune_budget if args.tune_budget is not None else max(1, settings.budget // 4)
    if budget < 1 or args.tune_episodes < 1:
        raise MosgymError("--tune-budget and --tune-episodes must be >= 1")
    seeds = parse_seeds(args.tune_seeds)
    agents = (config_dirs("agents") or [Path("agents")])[0]
    out = args.tune_out or agents / "bench" / settings.suite.name
    storage = args.tune_storage or f"sqlite:///{(settings.out / 'optuna.db').resolve()}"
    settings.out.mkdir(parents=True, exist_ok=True)
    command = getattr(args, "command", "mosgym benchmark --stage tune")
    paths = []
    for algo, entry in settings.entries.items():
        if entry.randomised:  # '-dr' trains with its base algorithm's entry: tune that one
            log.info("%s uses the entry of %s: tune %s", algo, base_algo(algo), base_algo(algo))
            continue
        tuning = Tuning(settings, algo, budget, seeds, args.tune_episodes, args.hparams)
        paths.append(tune(tuning, args.trials, storage, out, command))
    return paths
