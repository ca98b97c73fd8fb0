"""`python -m mosgym.sweep`: agents x seeds x env configs as trials, on Ray or one by one.

Each trial (env config, agent config, seed) runs what `python -m mosgym.run --env E --agent A
--seeds S` runs, and is logged as that command's per-seed run (same name, tags, params, metrics),
as a child of one parent sweep run: `python -m mosgym.compare --experiment NAME` reads a sweep.

Backends: ray (trials as Ray tasks on a local Ray, or on a cluster with --ray-address; install
with pip install "mosgym[ray]"), sequential (one process, one trial after another), auto (ray
if installed, else sequential). Workers on other machines need an MLflow tracking server.

Resume: run the same command again (same experiment, same grid), or --resume PARENT_RUN_ID:
trials whose child run FINISHED are skipped, the others (failed, unfinished) run again.
A failing trial is marked FAILED and the sweep goes on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from mosgym.errors import MosgymError
from mosgym.experiment.run import add_seed_step_set_args
from mosgym.experiment.sweep_trials import Trial, TrialOutcome
from mosgym.records.store import setup_cli_logging

log = logging.getLogger("mosgym.sweep")


@dataclass
class SweepSpec:
    """The grid as given: config names (or paths), seeds, overrides, MLflow experiment."""

    envs: list[str]
    agents: list[str]
    seeds: str = "0"
    sets: list[str] = field(default_factory=list)
    experiment: str | None = None

    def as_tag(self) -> dict[str, Any]:
        return {"envs": self.envs, "agents": self.agents, "seeds": self.seeds, "sets": self.sets}


@dataclass
class SweepResult:
    """The parent run and every trial's outcome, in grid order."""

    parent_run_id: str
    experiment: str
    backend: str
    outcomes: list[TrialOutcome]

    @property
    def failed(self) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.status == "FAILED"]


def resolve_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial's validated one-seed RunRequest, via mosgym.run's own resolution (so a
    trial is configured exactly as `python -m mosgym.run` would configure it)."""
    from mosgym.experiment import request, run
    from mosgym.experiment.sweep_trials import trial_id

    seeds = request.parse_seeds(spec.seeds)
    trials: list[Trial] = []
    for env in spec.envs:
        for agent in spec.agents:
            argv = ["--env", env, "--agent", agent, "--seeds", spec.seeds, "--no-progress"]
            argv += ["--checkpoint-every", "0", "--experiment", experiment_name(spec)]
            argv += [a for s in spec.sets for a in ("--set", s)]
            try:
                req = request.resolve_request(run.build_parser().parse_args(argv))
            except MosgymError as e:
                raise MosgymError(f"trial env {env}, agent {agent}: {e}") from None
            for seed in seeds:
                one = dataclasses.replace(req, seeds=[seed], checkpoint_dir=None)
                trials.append(Trial(one, trial_id(one)))
    return trials


def experiment_name(spec: SweepSpec) -> str:
    """--experiment, else the env's name (as mosgym.run), else 'sweep__ENV1__ENV2'."""
    if spec.experiment is not None:
        if not spec.experiment.strip():
            raise MosgymError("--experiment: must be a non-empty name")
        return spec.experiment
    names = [os.path.splitext(os.path.basename(e))[0] for e in spec.envs]
    return names[0] if len(names) == 1 else "sweep__" + "__".join(names)


def _absolute_uri(uri: str) -> str:
    """Workers may start elsewhere: a relative sqlite/file path is made absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    if "://" not in uri:
        return os.path.abspath(uri)
    return uri


def _experiment_id(client: Any, name: str, create: bool) -> str | None:
    """The experiment's id (None if it does not exist and not `create`)."""
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return str(client.create_experiment(name)) if create else None
    except MlflowException as e:
        raise MosgymError(f"MLflow experiment {name!r}: {str(e).splitlines()[0][:200]}") from None
    if exp.lifecycle_stage != "active":
        raise MosgymError(
            f"MLflow experiment {name!r} is deleted; choose another --experiment "
            "(or restore it in the MLflow UI)"
        )
    return str(exp.experiment_id)


def run_sweep(
    spec: SweepSpec | None,
    backend: str = "auto",
    ray_address: str | None = None,
    max_concurrent: int | None = None,
    resume: str | None = None,
    fresh: bool = False,
    progress: bool = False,
) -> SweepResult:
    """Run the grid (or the one recorded on parent run `resume`), skipping finished trials.

    Everything that can fail on bad input (configs, store, Ray) fails before any MLflow run or
    experiment is made. `fresh`: a new parent even when one of the same grid exists.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from mosgym.experiment import sweep_trials as sweep_runs
    from mosgym.experiment import tracking
    from mosgym.experiment.sweep_backends import choose_backend

    runner = choose_backend(backend, ray_address, max_concurrent, progress)
    trials = resolve_trials(spec) if spec is not None else []  # config errors first
    uri = _absolute_uri(tracking.check_tracking_server())
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    if resume is not None:
        recorded, experiment = sweep_runs.read_spec(client, resume)
        spec = SweepSpec(**recorded, experiment=experiment)
        trials = resolve_trials(spec)
    assert spec is not None
    experiment = experiment_name(spec)
    found = sweep_runs.find_parent(
        client, _experiment_id(client, experiment, create=False), trials, resume, fresh
    )
    todo = [t for t in trials if found is None or t.trial_id not in found.finished]
    if todo:  # nothing to run: no Ray to start
        runner.connect(uri)
    try:
        exp_id = _experiment_id(client, experiment, create=True)
        assert exp_id is not None
        outer = mlflow.active_run()  # a sweep started inside a run nests under it
        outer_id = outer.info.run_id if outer is not None else None
        parent = sweep_runs.start_parent(client, found, exp_id, spec.as_tag(), trials, outer_id)
        return _run_trials(client, runner, parent, trials, experiment, uri)
    finally:
        runner.close()


def _run_trials(
    client: Any, runner: Any, parent: Any, trials: list[Trial], experiment: str, uri: str
) -> SweepResult:
    from mosgym.experiment import faults
    from mosgym.experiment import sweep_trials as sweep_runs

    client.set_tag(parent.run_id, "mosgym.sweep.backend", runner.name)
    outcomes = {
        t.trial_id: sweep_runs.skipped_outcome(t, parent.finished[t.trial_id])
        for t in trials
        if t.trial_id in parent.finished
    }
    verb = "continued" if parent.reused else "new"
    log.info(
        "sweep parent run %s (%s) in experiment %r: %d trials, %d finished before",
        parent.run_id,
        verb,
        experiment,
        len(trials),
        len(outcomes),
    )
    for o in outcomes.values():
        log.info("skipping finished trial %s (run %s)", o.name, o.run_id)
    todo = [t for t in trials if t.trial_id not in parent.finished]
    status = "KILLED"
    try:
        with faults.signal_handlers():  # SIGINT/SIGTERM: runs marked KILLED, exit 128 + N
            for i, o in enumerate(runner.run(todo, parent.run_id, uri) if todo else [], 1):
                outcomes[o.trial_id] = o
                loss = (
                    f"{o.final_dev_loss_mean:.4f}" if math.isfinite(o.final_dev_loss_mean) else "-"
                )
                log.info(
                    "trial %d/%d %s: %s, final mean dev loss %s",
                    i,
                    len(todo),
                    o.name,
                    o.status,
                    loss,
                )
        ordered = [outcomes[t.trial_id] for t in trials]
        status = "FAILED" if any(o.status == "FAILED" for o in ordered) else "FINISHED"
    finally:
        sweep_runs.close_parent(client, parent.run_id, list(outcomes.values()), status)
    return SweepResult(parent.run_id, experiment, runner.name if todo else "none", ordered)


# ---------------------------------------------------------------------------------------------
# Command line


def format_summary(result: SweepResult) -> str:
    """A markdown table of the trials, then where the runs are and how to compare them."""
    lines = [
        "| trial | status | final mean dev loss | wall s | run |",
        "|---|---|---|---|---|",
    ]
    for o in result.outcomes:
        loss = f"{o.final_dev_loss_mean:.4f}" if math.isfinite(o.final_dev_loss_mean) else "-"
        wall = f"{o.wall_time_s:.1f}" if math.isfinite(o.wall_time_s) else "-"
        status = f"{o.status} ({o.error})" if o.error else o.status
        lines.append(f"| {o.name} | {status} | {loss} | {wall} | {o.run_id} |")
    n_failed = len(result.failed)
    ran = f"{result.backend} backend" if result.backend != "none" else "nothing left to run"
    lines += [
        "",
        f"sweep parent run {result.parent_run_id} in MLflow experiment '{result.experiment}' "
        f"({ran}); {len(result.outcomes) - n_failed} of {len(result.outcomes)} trials finished",
    ]
    if n_failed:
        lines.append(
            f"{n_failed} failed: rerun the same command (or --resume {result.parent_run_id}) "
            "to run only the unfinished trials again"
        )
    envs = sorted({o.env for o in result.outcomes})
    if len(envs) == 1:
        lines.append(f"compare: python -m mosgym.compare --experiment '{result.experiment}'")
        return "\n".join(lines)
    for env in envs:  # compare pools runs by agent: one env at a time
        ids = " ".join(o.run_id for o in result.outcomes if o.env == env and o.status != "FAILED")
        lines.append(
            f"compare {env}: python -m mosgym.compare --experiment '{result.experiment}' "
            f"--runs {ids} --out compare/{env}"
        )
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """Argument mistakes are MosgymErrors too: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise MosgymError(f"{message} (see python -m mosgym.sweep --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m mosgym.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  python -m mosgym.sweep --envs sim-skills-tiny --agents mos-cossim static-uni "
        "--seeds 0-4\n"
        "  python -m mosgym.sweep --envs skills-tiny --agents mos-cossim static-temp --seeds "
        "0-9 --ray-address ray://head:10001   # MLFLOW_TRACKING_URI=http://...\n"
        "  python -m mosgym.sweep --resume PARENT_RUN_ID",
    )
    p.add_argument("--envs", nargs="+", default=None, metavar="ENV", help="env configs")
    p.add_argument("--agents", nargs="+", default=None, metavar="AGENT", help="agent configs")
    add_seed_step_set_args(
        p,
        seeds_help="seed, range or list: 0 | 0-4 | 0,3,7 (0)",
        set_help="override a config key in every trial (as in mosgym.run)",
    )
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: env name)")
    p.add_argument("--backend", default="auto", help="auto (default) | ray | sequential")
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster: ray://HOST:10001, HOST:6379 or auto (default: $RAY_ADDRESS, else a "
        "local Ray)",
    )
    p.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="Ray tasks")
    p.add_argument("--resume", default=None, metavar="PARENT_RUN_ID", help="continue a sweep")
    p.add_argument("--fresh", action="store_true", help="new parent run even if one matches")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return p


def spec_from_args(args: argparse.Namespace) -> SweepSpec | None:
    """The grid from the command line; None with --resume (the parent run records it)."""
    grid = {"--envs": args.envs, "--agents": args.agents, "--seeds": args.seeds}
    grid.update({"--steps": args.steps, "--set": args.sets, "--experiment": args.experiment})
    if args.resume:
        given = [flag for flag, value in grid.items() if value]
        if given or args.fresh:
            extra = ", ".join(given + (["--fresh"] if args.fresh else []))
            raise MosgymError(f"--resume runs the grid recorded on the parent run; drop {extra}")
        return None
    if not args.envs or not args.agents:
        raise MosgymError("--envs and --agents are required (or --resume PARENT_RUN_ID)")
    sets = list(args.sets) + ([f"train.total_steps={args.steps}"] if args.steps else [])
    return SweepSpec(args.envs, args.agents, args.seeds or "0", sets, args.experiment)


def _run(args: argparse.Namespace) -> int:
    try:
        result = run_sweep(
            spec_from_args(args),
            args.backend,
            args.ray_address or os.environ.get("RAY_ADDRESS") or None,
            args.max_concurrent,
            args.resume,
            args.fresh,
            progress=not args.no_progress,
        )
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(
            f"mosgym: sweep interrupted ({signal.Signals(signum).name}); finished trials are "
            "kept: rerun the same command to run the others",
            file=sys.stderr,
        )
        return 128 + signum
    print(format_summary(result))
    return 1 if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    setup_cli_logging()
    try:
        args = build_parser().parse_args(argv)
    except MosgymError as e:
        print(f"mosgym: error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("mosgym.sweep").setLevel(logging.ERROR if args.quiet else logging.INFO)
    return _run(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
